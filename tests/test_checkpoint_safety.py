"""Loading refuses what `torch.load(weights_only=True)` refuses, never runs code from a file, and
names the differences when a checkpoint belongs to another model: one line, exit code 2."""

import os
import pickle

import pytest
import torch

from cnnexp.cli import main

TINY = ("trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20", "model.hidden=16")
IMAGE = {"eval": (), "predict": ("image=olivetti",)}


class Exploit:
    """Unpickling this runs a shell command: the file must be refused before anything executes."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY, "model.nkerns=[4,8]", f"hydra.run.dir={base / 'small'}"]) == 0
    assert main(["train", *TINY, "model.nkerns=[6,8]", f"hydra.run.dir={base / 'wider'}"]) == 0
    return base


def assert_one_line_error(result, *fragments):
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("save", ["pickle", "torch"])
def test_pickle_with_code_is_refused_and_not_run(cnnexp, workdir, command, save):
    marker = workdir / "pwned"
    with open(workdir / "evil.pt", "wb") as f:
        if save == "pickle":
            pickle.dump({"format": "cnnexp-checkpoint-1", "model": Exploit(marker)}, f)
        else:
            torch.save({"format": "cnnexp-checkpoint-1", "model": Exploit(marker)}, f)
    result = cnnexp(command, "checkpoint=evil.pt", *IMAGE[command])
    assert_one_line_error(result, "evil.pt is not a safe cnnexp checkpoint", "load only checkpoints cnnexp wrote")
    assert not marker.exists()


def test_pickle_with_code_in_a_subprocess(cnnexp_process, workdir):
    """What a user's shell sees: exit code 2, one line, no traceback, the command never ran."""
    marker = workdir / "pwned"
    with open(workdir / "evil.pt", "wb") as f:
        pickle.dump(Exploit(marker), f)
    result = cnnexp_process("eval", "checkpoint=evil.pt")
    assert_one_line_error(result, "is not a safe cnnexp checkpoint")
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"just some text, not a checkpoint\n", "is not a readable cnnexp checkpoint"),
    (b"", "is not a readable cnnexp checkpoint"),
])
def test_not_a_checkpoint(cnnexp, workdir, content, message):
    (workdir / "notes.pt").write_bytes(content)
    assert_one_line_error(cnnexp("eval", "checkpoint=notes.pt"), message)


def test_foreign_dict_and_truncated_file(cnnexp, workdir, runs):
    torch.save({"weights": torch.zeros(3)}, workdir / "other.pt")
    assert_one_line_error(cnnexp("eval", "checkpoint=other.pt"), "is not a cnnexp checkpoint")

    data = (runs / "small" / "checkpoints" / "best.pt").read_bytes()
    (workdir / "half.pt").write_bytes(data[: len(data) // 2])
    assert_one_line_error(cnnexp("eval", "checkpoint=half.pt"), "half.pt is not a readable cnnexp checkpoint")


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_checkpoint_of_another_model_names_the_differences(cnnexp, runs, command):
    result = cnnexp(command, f"run={runs / 'small'}", f"checkpoint={runs / 'wider' / 'checkpoints' / 'best.pt'}",
                    *IMAGE[command])
    assert_one_line_error(result, "does not fit the model lenet for 1x57x47 inputs, 40 classes",
                          "shapes differ (checkpoint vs model): features.0.weight [6, 1, 5, 5] vs [4, 1, 5, 5]",
                          "use the checkpoint with the run that wrote it")
    assert not (runs / "small" / "eval").exists()


def test_missing_run_and_checkpoint(cnnexp, workdir, runs):
    assert_one_line_error(cnnexp("eval", "run=outputs/train/nope"), "run=outputs/train/nope is not a folder")
    assert_one_line_error(cnnexp("eval", "checkpoint=nope.pt"), "nope.pt does not exist")
    (runs / "small" / "checkpoints" / "best.pt").rename(runs / "small" / "checkpoints" / "kept.pt")
    try:
        assert_one_line_error(cnnexp("eval", f"run={runs / 'small'}"), "no best checkpoint in the run folder")
    finally:
        (runs / "small" / "checkpoints" / "kept.pt").rename(runs / "small" / "checkpoints" / "best.pt")
    assert list(workdir.iterdir()) == []
