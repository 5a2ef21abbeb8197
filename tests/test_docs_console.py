"""Every console example of the README and the site, run and compared with the lines it shows
(tests/console_blocks.py says how blocks are found, marked and compared)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from console_blocks import Block, console_blocks, matches

BLOCKS = console_blocks()
QUICK = [b for b in BLOCKS if b.kind == "quick"]
SLOW_PAGES = sorted({b.page for b in BLOCKS if b.kind == "slow"})
STEP_TIMEOUT_S = {"quick": 60, "slow": 900}
WIDTH = 80  # what every line a command prints fits, but the one-line messages (kept whole for grep and logs)
ONE_LINE = ("error: ", "warning: ", "Model diverged ")


def shell_env() -> dict:
    """The user's shell as the examples assume it: this environment's `cnnexp` and `python` first on
    PATH, no debug tracebacks, an 80-column terminal."""
    env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = str(WIDTH)
    return env


def newest_run(workdir: Path) -> str | None:
    runs = sorted((workdir / "outputs" / "train").glob("*"), key=lambda p: p.stat().st_mtime)
    return str(runs[-1].relative_to(workdir)) if runs else None


def run_block(block: Block, workdir: Path) -> None:
    """Run each command of the block in workdir with bash; a run folder the command names
    (`outputs/train/<timestamp>` or `<run>`) is the newest one made there."""
    import re

    for step in block.steps:
        command = step.command
        if (run := newest_run(workdir)) is not None:
            command = re.sub(r"outputs/train/(?:\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(?:-\d+)?|<run>)", run, command)
        proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=shell_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=STEP_TIMEOUT_S[block.kind])
        assert matches(step.shown, proc.stdout), (
            f"{block.id}: `{step.command}` printed\n{proc.stdout}\nbut the page shows\n" + "\n".join(step.shown))
        wide = [line for line in proc.stdout.splitlines() if len(line) > WIDTH and not line.startswith(ONE_LINE)]
        assert not wide, f"{block.id}: `{step.command}` printed lines over {WIDTH} columns:\n" + "\n".join(wide)


@pytest.fixture
def workdir():
    """A fresh folder with a short path, as a user's would be: the run summary's table is as wide as
    its widest line, so a long temporary path in it would wrap the lines the page shows."""
    folder = Path(tempfile.mkdtemp(prefix="cnx", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def damaged_photos(folder: Path) -> None:
    """photos/{cats,dogs}: 11 + 10 small JPEGs, a truncated one and a text file named as a photo."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in (("cats", 11), ("dogs", 10)):
        (folder / "photos" / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "photos" / name / f"{name}.{i}.jpg", quality=90)
    whole = (folder / "photos" / "cats" / "cats.0.jpg").read_bytes()
    (folder / "photos" / "cats" / "broken.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "photos" / "dogs" / "notes.jpg").write_text("not a photo\n")


def broken_hdf5_files(folder: Path) -> None:
    """cut.h5, an HDF5 file cut in half (a copy that stopped early), and other.h5, one cnnexp did not build."""
    import h5py
    import numpy as np

    with h5py.File(folder / "other.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((64, 32, 32, 3), np.uint8))
    whole = (folder / "other.h5").read_bytes()
    (folder / "cut.h5").write_bytes(whole[: len(whole) // 2])


SETUPS = {"a photo folder with a damaged file": damaged_photos, "a truncated and a foreign HDF5 file": broken_hdf5_files}


@pytest.mark.parametrize("block", QUICK, ids=[b.id for b in QUICK])
def test_console_example(block, workdir):
    if block.setup:
        SETUPS[block.setup](workdir)
    run_block(block, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES)
def test_slow_console_examples_of_a_page(page, workdir):
    for block in (b for b in BLOCKS if b.page == page and b.kind == "slow"):
        run_block(block, workdir)


def test_every_unrun_example_says_why():
    unrun = [b for b in BLOCKS if b.kind != "quick"]
    assert all(b.reason.strip() for b in unrun)
    assert {b.kind for b in unrun} <= {"slow", "not run"}


def test_the_comparison_elides_only_what_it_says():
    shown = ["20 epochs in ... s (... img/s); run folder: outputs/train/2026-11-30_23-31-37", "...", "done"]
    real = "20 epochs in 15.9 s (403 img/s); run folder: outputs/train/2026-12-06_10-00-00-2\nx\ny\ndone\n"
    assert matches(shown, real)
    assert not matches(shown, real.replace("20 epochs", "21 epochs"))
    assert not matches(shown, real + "more\n")
    assert not matches(["a", "b"], "a\n")
    assert matches(["   1    0.05       ...  *"], "   1    0.05      1017  *\n")  # a wider number, same column
    assert not matches(["   1    0.05       ...  *"], "   1    0.06       101  *\n")
