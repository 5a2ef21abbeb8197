"""The library under the commands: cnnexp.train and cnnexp.open_run give the commands' numbers, raise
cnnexp exceptions (never SystemExit), stop on an interrupt after saving, and change nothing process-wide."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cnnexp
from cnnexp.cli import main
from conftest import read_json

TINY = ("trainer.epochs=2", "dataset.limit=80", "trainer.batch_size=20", "device=cpu", "augmentation=patch",
        "augmentation.crop_size=[52,42]")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny Olivetti run from Python and from the command line."""
    root = tmp_path_factory.mktemp("library")
    run = cnnexp.train(*TINY, run_dir=root / "python")
    assert main(["train", *TINY, f"hydra.run.dir={root / 'cli'}"]) == 0
    return run, root / "cli"


def test_train_gives_the_command_lines_numbers(runs):
    run, cli = runs
    assert run.metrics["best_val_error"] == read_json(cli / "metrics.json")["best_val_error"]
    assert run.metrics["test_error"] == read_json(cli / "metrics.json")["test_error"]
    assert [r["val_loss"] for r in run.history] == [r["val_loss"] for r in cnnexp.Run(cli).history]
    assert run.best.is_file() and run.last.is_file() and run.curves.is_file()


def test_evaluate_gives_eval_s_numbers_with_ten_crop(runs, capsys):
    run, cli = runs
    assert main(["eval", f"run={cli}", "--tencrop"]) == 0
    from_cli = read_json(cli / "eval" / "test-tencrop" / "eval.json")
    record = cnnexp.open_run(run.folder).evaluate("test", tencrop=True)
    assert (record["error"], record["tencrop_error"], record["tencrop_loss"]) == (
        from_cli["error"], from_cli["tencrop_error"], from_cli["tencrop_loss"])
    assert json.loads((run.folder / "eval" / "test-tencrop" / "eval.json").read_text()) == record


def test_predict_takes_a_path_a_pil_image_and_an_array_alike(runs, tmp_path):
    run, _ = runs
    face = (np.random.default_rng(0).random((57, 47)) * 255).astype(np.uint8)
    Image.fromarray(face).save(tmp_path / "face.png")
    predictor = run.open()
    by_path, by_image, by_array = predictor.predict([tmp_path / "face.png", Image.fromarray(face), face], topk=3)
    assert by_path == by_image == by_array and len(by_path) == 3
    assert by_path[0]["label"] in predictor.class_names
    with pytest.raises(cnnexp.DataError, match="cannot read a dict"):
        predictor.predict({})


def test_bad_input_is_a_cnnexp_exception_naming_it_not_system_exit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cnnexp.ConfigError, match="unknown dataset 'cifar'"):
        cnnexp.train("dataset=cifar")
    with pytest.raises(cnnexp.UserError, match="no/such/run"):
        cnnexp.open_run("/no/such/run")
    assert not (tmp_path / "outputs").exists()


def test_an_interrupt_saves_last_pt_and_says_how_to_resume_in_python(tmp_path):
    """SIGINT, as a notebook's "interrupt the kernel" sends it, during the first evaluation."""
    def interrupt(row):
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(cnnexp.Interrupted) as stopped:
        cnnexp.train(*TINY, "trainer.epochs=5", run_dir=tmp_path / "run", on_evaluation=interrupt)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert f"cnnexp.train('trainer.resume={(tmp_path / 'run').resolve()}')" in str(stopped.value)
    assert stopped.value.exit_code == 130
    resumed = cnnexp.train(*TINY, "trainer.epochs=5", f"trainer.resume={tmp_path / 'run'}", run_dir=tmp_path / "more")
    assert resumed.metrics["epochs_run"] == 5


UNCHANGED = r"""
import ctypes, gc, sys, json
calls = []
libc = ctypes.CDLL(None)
real = libc.mallopt
class Spy:
    def __getattr__(self, name):
        if name == "mallopt":
            calls.append(name)
        return getattr(libc, name)
ctypes.CDLL = lambda *a, **k: Spy()
import torch
from tensorboard.summary.writer import record_writer
before = (record_writer.masked_crc32c, gc.isenabled(), gc.get_freeze_count(), gc.get_threshold(),
          torch.get_num_threads(), sys.getswitchinterval())
import cnnexp
after_import = (record_writer.masked_crc32c, gc.isenabled(), gc.get_freeze_count(), gc.get_threshold(),
                torch.get_num_threads(), sys.getswitchinterval())
cnnexp.train("trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20", "device=cpu", "device.threads=1",
             run_dir="run")
after_train = (record_writer.masked_crc32c, gc.isenabled(), gc.get_freeze_count(), gc.get_threshold(),
               torch.get_num_threads(), sys.getswitchinterval())
cnnexp.sweep("optimizer.lr=0.1,0.05", "trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20", "device=cpu",
             "sweep.dir=sweep")
after_sweep = (record_writer.masked_crc32c, gc.isenabled(), gc.get_freeze_count(), gc.get_threshold(),
               torch.get_num_threads(), sys.getswitchinterval())
print(json.dumps({"import": before == after_import, "train": before == after_train, "sweep": before == after_sweep,
                  "mallopt": calls}))
"""


def test_sweep_returns_its_folder_and_summary_and_continues_a_sweep(tmp_path, monkeypatch, capsys):
    """cnnexp.sweep runs what `cnnexp sweep` runs; the same call again skips the finished runs; bad input is a
    cnnexp exception before any run starts (never SystemExit)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cnnexp.UserError, match="sweep.metric='accuracy' is not a run metric"):
        cnnexp.sweep("optimizer.lr=0.1,0.05", "sweep.metric=accuracy")
    assert not (tmp_path / "outputs").exists()
    args = ("optimizer.lr=0.1,0.05", "trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20", "device=cpu",
            "sweep.dir=lr")
    study = cnnexp.sweep(*args)
    assert study.folder.resolve() == (tmp_path / "lr").resolve() and study.plot.is_file()
    assert study.summary == read_json(tmp_path / "lr" / "summary.json")
    assert sorted(row["values"]["optimizer.lr"] for row in study.summary["points"]) == ["0.05", "0.1"]
    assert all(row["runs_ok"] == 1 for row in study.summary["points"])
    capsys.readouterr()
    assert cnnexp.sweep(*args).summary == study.summary
    assert "all 2 points already done" in capsys.readouterr().out


def test_import_and_train_change_nothing_process_wide(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", UNCHANGED], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"import": True, "train": True, "sweep": True,
                                                                "mallopt": []}


def test_the_command_line_applies_the_tunings(tmp_path):
    """The same spy under `cnnexp train`: malloc tuned, tensorboard's checksum in C."""
    script = UNCHANGED.split("import cnnexp")[0] + (
        "from cnnexp.cli import main\n"
        "main(['train', 'trainer.epochs=1', 'dataset.limit=40', 'trainer.batch_size=20', 'device=cpu'])\n"
        "print(json.dumps({'crc': record_writer.masked_crc32c.__module__, 'mallopt': calls}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CNNEXP_DEBUG", "CNNEXP_MALLOC_DEFAULTS")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"crc": "cnnexp.utils.tunings", "mallopt": ["mallopt"]}


def test_the_python_api_pages_examples_run(tmp_path):
    """docs/reference/python-api.md's python blocks, in order, in one fresh process and empty folder."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "reference" / "python-api.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
    assert len(blocks) >= 4
    env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "unknown dataset 'cifar'" in proc.stdout.splitlines()[-1]
    assert (tmp_path / "runs" / "first" / "eval" / "test-tencrop" / "eval.json").is_file()
