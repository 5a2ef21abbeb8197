"""A fast start: `cnnexp --help`, `cnnexp <command> --help` and `--cfg job` print without importing torch
(2-4 s on a CPU machine) or the other heavy libraries; they are imported when a command really runs.

Checked with `python -X importtime`, which lists every module a process imports, on stderr."""

import os
import re
import subprocess
import sys

import pytest

from cnnexp.commands import COMMANDS

HEAVY = ("torch", "torchvision", "cv2", "matplotlib", "fastapi", "sklearn", "h5py")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$")  # "... |   torch.nn": torch.nn


def imported_packages(*args: str, cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnexp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    names = {m.group(1).split(".")[0] for line in proc.stderr.splitlines() if (m := IMPORT_LINE.match(line))}
    return proc, names


@pytest.mark.parametrize("args", [
    ["--help"],
    ["train", "--help"],
    ["train", "--cfg", "job"],
    ["train", "model=alexnet_bn", "dataset=folder", "device=cpu", "--cfg", "job"],
    ["sweep", "--help"],
    ["sweep", "model=lenet,mnist_cnn", "--cfg", "job"],
    ["sweep", "summarize", "--help"],
    ["data", "--help"],
    ["data", "build-hdf5", "--help"],
    ["data", "show", "--cfg", "job"],
    ["viz", "--help"],
    ["viz", "gradcam", "--help"],
    *[[name, "--help"] for name in COMMANDS if name not in ("train", "sweep", "data", "viz")],
    *[[name, "--cfg", "job"] for name in ("eval", "predict", "serve", "features", "probe")],
], ids=" ".join)
def test_help_and_cfg_job_do_not_import_torch(args, tmp_path):
    proc, imported = imported_packages(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
    assert "hydra" in imported  # the check sees the imports: the config layer is there
    assert not imported & set(HEAVY), f"`cnnexp {' '.join(args)}` imported {sorted(imported & set(HEAVY))}"


def test_a_command_that_runs_imports_torch_and_still_fails_in_one_line(tmp_path):
    """The imports moved into the commands happen when the command runs; a bad value found there is still
    one `error:` line (the eval of a run folder that does not exist: found by restoring it, with torch)."""
    proc, imported = imported_packages("eval", "run=nowhere", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "torch" in imported
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert len(said) == 1 and said[0].startswith("error: ") and "nowhere" in said[0], said
