"""Console output fits 80 columns, on a terminal or in a pipe: the help of every command and the output of
train, eval, predict and a sweep's summary, run at COLUMNS=80, have no line over 80 characters."""

import pytest
from conftest import only_run
from PIL import Image
from test_sweep import Plan, fake_run, write_sweep_json

from cnnexp.commands import COMMANDS
from cnnexp.commands.data import TOOLS
from cnnexp.commands.viz import PICTURES

WIDTH = 80
HELPS = [(), *[(name,) for name in COMMANDS], ("sweep", "summarize"), *[("data", tool) for tool in TOOLS],
         *[("viz", picture) for picture in PICTURES]]


def too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > WIDTH]


@pytest.fixture(autouse=True)
def columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


@pytest.mark.parametrize("command", HELPS, ids=[" ".join(c) or "cnnexp" for c in HELPS])
def test_help_fits(cnnexp, command):
    result = cnnexp(*command, "--help")
    assert result.code == 0, result.err
    assert result.out.count("\n") > 3 and too_wide(result.out) == []


def test_train_eval_and_predict_fit(cnnexp, workdir):
    trained = cnnexp("train", "dataset.limit=80", "trainer.batch_size=20", "trainer.epochs=2",
                     "augmentation=patch", "model.nkerns=[4,8]", "model.hidden=32")
    assert trained.code == 0, trained.err
    assert too_wide(trained.out) == []
    run = only_run(workdir / "outputs" / "train")
    evaluated = cnnexp("eval", f"run={run}", "--tencrop", "split=train")
    assert evaluated.code == 0 and "misclassified" in evaluated.out, evaluated.err
    assert too_wide(evaluated.out) == []
    for name in ("a_face_photo_with_a_long_name.png", "another_face_photo_with_a_long_name.png"):
        Image.new("L", (47, 57), 128).save(workdir / name)
    predicted = cnnexp("predict", f"run={run}", f"image=[{workdir}/a_face_photo_with_a_long_name.png,"
                                                f"{workdir}/another_face_photo_with_a_long_name.png]", "topk=3")
    assert predicted.code == 0, predicted.err
    assert too_wide(predicted.out) == []


def test_sweep_summary_fits(cnnexp, workdir):
    sweep_dir = workdir / "sweep"
    sweep_dir.mkdir()
    grid = {"optimizer.lr": ["0.1", "0.01"], "trainer.batch_size": ["20", "40"]}
    write_sweep_json(sweep_dir, Plan(grid=grid, seeds=["0", "1"]), "best_val_error")
    for lr in grid["optimizer.lr"]:
        for batch in grid["trainer.batch_size"]:
            for seed in ("0", "1"):
                fake_run(sweep_dir, f"lr={lr},bs={batch},seed={seed}",
                         [f"optimizer.lr={lr}", f"trainer.batch_size={batch}", f"seed={seed}"],
                         {"best_val_error": 0.1234 + float(lr), "test_error": 0.2345, "train_seconds": 1234.5})
    fake_run(sweep_dir, "lr=0.1,bs=20,seed=2", ["optimizer.lr=0.1", "trainer.batch_size=20", "seed=2"],
             failed="Model diverged with loss = nan at epoch 3, step 24")
    result = cnnexp("sweep", "summarize", f"dir={sweep_dir}")
    assert result.code == 0, result.err
    assert "lr" in result.out and "batch_size" in result.out and "± 0.00" in result.out
    assert too_wide(result.out) == []
