"""Shared fixtures: run the CLI in-process (fast) or as a subprocess (real exit codes, no traceback)."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def find_shared_datasets() -> Path:
    """The real test data: $CNNEXP_TEST_DATA, else `shared/datasets` beside this checkout or one of its
    parents, else beside the repository this one was cloned from (a clone made elsewhere, e.g. in /tmp)."""
    if os.environ.get("CNNEXP_TEST_DATA"):
        return Path(os.environ["CNNEXP_TEST_DATA"])
    candidates = [parent / "shared" / "datasets" for parent in ROOT.parents]
    origin = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates += [parent / "shared" / "datasets" for parent in Path(origin).resolve().parents]
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED = find_shared_datasets()
MISSING_DATA_HINT = ("data outside the repository: set CNNEXP_TEST_DATA to a folder holding mnist/, olivetti/, "
                     "cats_and_dogs_small/, cats_and_dogs/ and utkface/ to run it")


def slow_writes(seconds: float) -> dict:
    """Environment for a child process whose checkpoint writes take `seconds` each (tests/fixtures/slow_writes
    replaces cnnexp.utils.checkpoint.serialize at its start-up), so a test can kill it inside one."""
    path = [str(ROOT / "tests" / "fixtures" / "slow_writes"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {"CNNEXP_TEST_SLOW_WRITES": str(seconds), "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def need(path: Path, what: str) -> Path:
    """`path`, test data outside the repository; when it is absent the test is skipped, naming the data
    and where it was looked for (a fixture that calls this skips the tests that use it)."""
    if not path.exists():
        pytest.skip(f"needs {what}, not found at {path} ({MISSING_DATA_HINT})")
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Folder indexes (cnnexp/data/index.py) go to a cache folder of the test's own, never the user's."""
    monkeypatch.setenv("CNNEXP_CACHE", str(tmp_path_factory.mktemp("cache")))


MNIST_ROOT = SHARED / "mnist"
OLIVETTI_GIF = SHARED / "olivetti" / "olivettifaces.gif"
CATS_DOGS = SHARED / "cats_and_dogs_small"
UTKFACE = SHARED / "utkface"
UTKFACE_PHOTO = UTKFACE / "100_1_0_20170110183726390.jpg.chip.jpg"  # a 200x200 face crop Haar finds on a background
# `cnnexp train` of a colour run at another size than the Olivetti runs: a small CNN telling F from M on
# 32x32 RGB UTKFace faces (add dataset.root=<utkface_genders(...)> and hydra.run.dir=...)
GENDER_RUN = ("dataset=folder", "dataset.size=32", "dataset.workers=0", "model=small_cnn", "model.widths=[8,16]",
              "trainer.epochs=2", "trainer.batch_size=8", "device.threads=1")


def utkface_genders(root: Path, per_class: int = 12) -> Path:
    """root/F and root/M with the first `per_class` UTKFace faces of each gender (0 male, 1 female)."""
    for label, gender in (("M", "0"), ("F", "1")):
        (root / label).mkdir(parents=True)
        faces = sorted(need(UTKFACE, "the UTKFace faces").glob("*.jpg"))
        for path in [p for p in faces if p.name.split("_")[1] == gender][:per_class]:
            shutil.copy(path, root / label / path.name)
    return root


def photo_with_face(path: Path, at: tuple[int, int] = (220, 140)) -> Path:
    """UTKFACE_PHOTO pasted on a 640x480 grey background at `at` (x, y), saved as a JPEG."""
    from PIL import Image

    background = Image.new("RGB", (640, 480), (120, 130, 140))
    with Image.open(need(UTKFACE_PHOTO, "a UTKFace face")) as face:
        background.paste(face.convert("RGB"), at)
    background.save(path, quality=95)
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run commands from an empty folder so outputs/ lands in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cnnexp(workdir, capsys):
    """cnnexp(*args) -> Result, in this process."""
    from cnnexp.cli import main

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cnnexp_process(workdir):
    """cnnexp(*args) -> Result, as a separate process (what a user's shell sees)."""

    def run(*args: str, timeout: int = 300) -> Result:
        env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
        proc = subprocess.run([sys.executable, "-m", "cnnexp", *args], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def only_run(base: Path) -> Path:
    """The single run folder under base (e.g. outputs/train)."""
    runs = sorted(p for p in base.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def gender_run(tmp_path_factory):
    """A colour run of another input size and normalisation than the tests' Olivetti LeNet: 32x32 RGB
    UTKFace faces, F or M (predict's and serve's tests of several named runs)."""
    from cnnexp.cli import main

    root = utkface_genders(tmp_path_factory.mktemp("utkface") / "genders")
    folder = tmp_path_factory.mktemp("runs") / "gender"
    assert main(["train", *GENDER_RUN, f"dataset.root={root}", f"hydra.run.dir={folder}"]) == 0
    return folder
