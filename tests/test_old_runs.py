"""A run written by an earlier cnnexp (tests/fixtures/run_main_387fe52: made by main at 387fe52 with
`cnnexp train model.nkerns=[2,4] model.hidden=8 trainer.epochs=2 trainer.batch_size=40 optimizer.lr=0.1
device=cpu`) still resumes, evaluates, predicts and serves with today's code."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import read_json
from PIL import Image

from cnnexp.data.sources.olivetti import embedded_gif, read_faces

FIXTURE = Path(__file__).parent / "fixtures" / "run_main_387fe52"


@pytest.fixture
def old_run(tmp_path):
    """A copy of the old run, so commands that write into it (eval) leave the fixture as it is."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "old_run"))


@pytest.fixture
def face(tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(read_faces(embedded_gif())[57]).save(path)
    return path


def test_old_run_resumes_to_more_epochs(cnnexp, old_run, workdir):
    resumed = workdir / "resumed"
    result = cnnexp("train", f"trainer.resume={old_run}", "trainer.epochs=3", f"hydra.run.dir={resumed}")
    assert result.code == 0, result.err
    metrics = read_json(resumed / "metrics.json")
    assert metrics["epochs_run"] == 3 and metrics["steps"] == 24
    history = (resumed / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3  # the old run's two epochs carried over, and the new one
    assert (resumed / "checkpoints" / "best.pt").is_file()


def test_old_run_evaluates_to_its_recorded_numbers(cnnexp, old_run):
    result = cnnexp("eval", f"run={old_run}", "split=test")
    assert result.code == 0, result.err
    report = read_json(old_run / "eval" / "test" / "eval.json")
    assert report["n"] == 40 and report["epoch"] == 2 and report["step"] == 16
    assert report["error"] == pytest.approx(read_json(old_run / "metrics.json")["test_error"])


def test_old_checkpoint_file_predicts_like_its_run(cnnexp, old_run, face):
    by_run = cnnexp("predict", f"run={old_run}", f"image={face}", "--json")
    by_file = cnnexp("predict", f"checkpoint={old_run / 'checkpoints' / 'best.pt'}", f"image={face}", "--json")
    assert by_run.code == 0 and by_file.code == 0, by_run.err + by_file.err
    assert json.loads(by_run.out)["top"] == json.loads(by_file.out)["top"]


def test_old_run_serves_what_predict_prints(cnnexp, old_run, face, tmp_path):
    from test_serve import Server

    printed = cnnexp("predict", f"run={old_run}", f"image={face}", "topk=3", "--json")
    assert printed.code == 0, printed.err
    server = Server(old_run, tmp_path / "serve.log", "topk=3")
    try:
        status, answer = server.request("POST", "/predict", face.read_bytes(), {"Content-Type": "image/png"})
    finally:
        assert server.stop() == 0
    assert status == 200
    served, expected = answer["images"][0]["top"], json.loads(printed.out)["top"]
    assert [g["label"] for g in served] == [g["label"] for g in expected]
    assert [g["prob"] for g in served] == pytest.approx([g["prob"] for g in expected], abs=1e-4)


def test_old_checkpoint_is_still_a_plain_weights_only_file():
    ckpt = torch.load(FIXTURE / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["format"] == "cnnexp-checkpoint-1" and ckpt["epoch"] == 2
