"""Small file helpers shared by every layer."""

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """Where a file is written before it is renamed to `path`: beside it (the same filesystem), hidden."""
    return path.with_name(f".{path.name}.tmp")


def write_json_atomic(obj, path: Path) -> None:
    """Write JSON under a temporary name, then rename: a reader never sees a half-written file."""
    tmp = temporary_name(path)
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: Path):
    """A temporary name beside `path` to write to; renamed to `path` when the block ends without error,
    so a reader (a user opening a PNG while a run is going) never sees a half-written file."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def exclusive_lock(folder: Path, name: str = ".lock", wait: bool = False):
    """Yield True while this process holds the lock file `folder/name`, False when another process holds
    it (with `wait`, wait for it instead: always True). An flock belongs to the open file, so the kernel
    releases it when the holder dies, however it dies."""
    with open(folder / name, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def conf_dir() -> Path:
    """The config tree: inside the installed package, or `conf/` beside it in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    return here / "conf" if (here / "conf" / "train.yaml").exists() else here.parent / "conf"


def display_path(path) -> str:
    """A path relative to the working folder when it lies inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def short_names(paths: list) -> list[str]:
    """Names of files for a console line: relative to the working folder when they lie inside it, else to
    the folder that holds them all (`cats/cat.12.jpg`)."""
    shown = [display_path(p) for p in paths]
    if not paths or all(not Path(s).is_absolute() for s in shown):
        return shown
    common = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))
    return [str(Path(p).resolve().relative_to(common)) for p in paths]
