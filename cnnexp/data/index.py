"""Which files of an image folder are readable: checked once, remembered in an index, and re-checked
only where a file changed.

Checking a file decodes it (a JPEG at 1/8 scale: every byte read, little work), so that a damaged
file is found before training starts rather than in the middle of an epoch; 25,000 photos take about
a minute on two cores. The index keeps, per file, its size, modification time, width and height
(from the header) and whether it is readable (or why not); the next run on the same folder stats
the files, re-checks only those whose size or modification time differ or that are new, and drops
the entries of files that are gone. The index lives in the user's cache folder ($CNNEXP_CACHE/index,
else $XDG_CACHE_HOME/cnnexp/index, else ~/.cache/cnnexp/index), one JSON file per folder and pixel
limit, never in the data folder (it may be read-only or shared). A cache that cannot be written
costs the next run a full check, nothing else.
"""

import hashlib
import json
import os
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from cnnexp.data.images import DECODE_ERRORS, UnreadableImage, open_image
from cnnexp.utils.files import write_json_atomic

VERSION = 1
PROBE_SIZE = (8, 8)  # a JPEG is checked by decoding it at 1/8 scale
CHUNK = 64  # files per task handed to a worker


def cache_folder() -> Path:
    if os.environ.get("CNNEXP_CACHE"):
        return Path(os.environ["CNNEXP_CACHE"]) / "index"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnexp" / "index"


def index_file(root: Path, max_pixels: int) -> Path:
    key = hashlib.sha256(f"{root.resolve()}\n{max_pixels}".encode()).hexdigest()[:20]
    return cache_folder() / f"{key}.json"


def probe(path: Path, max_pixels: int) -> tuple[int | None, int | None, str | None]:
    """(width, height, None) of a readable file, (width, height, reason) of an unreadable one; the
    size from the header (None where Pillow does not open the format, e.g. PAM)."""
    width = height = None
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (*DECODE_ERRORS, Image.UnidentifiedImageError):
        pass
    try:
        open_image(path, 3, PROBE_SIZE, max_pixels)
    except UnreadableImage as exc:
        return width, height, str(exc)
    return width, height, None


class _Probes(Dataset):
    """Item i: the probes of chunk i of the paths (run in a DataLoader worker)."""

    def __init__(self, paths: list[Path], max_pixels: int):
        self.paths, self.max_pixels = paths, max_pixels
        self.starts = range(0, len(paths), CHUNK)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> list:
        start = self.starts[i]
        return [probe(path, self.max_pixels) for path in self.paths[start : start + CHUNK]]


def probe_all(paths: list[Path], max_pixels: int, workers: int, console: Console) -> list[tuple]:
    """The probes of all paths, in order, computed by `workers` processes, with a progress bar."""
    probes = _Probes(paths, max_pixels)
    results: list[tuple] = []
    if not paths:
        return results
    loader = DataLoader(probes, batch_size=None, num_workers=min(int(workers), len(probes)),
                        collate_fn=lambda chunk: chunk)
    columns = (TextColumn("checking images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("check", total=len(paths))
        for chunk in loader:
            results += chunk
            progress.advance(task, len(chunk))
    return results


def read_index(path: Path) -> dict:
    """{relative path: [size, mtime_ns, width, height, reason]} of a previous check; {} when there is
    none or it cannot be read (a damaged index is rebuilt, never trusted)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    files = saved.get("files") if isinstance(saved, dict) and saved.get("version") == VERSION else None
    return files if isinstance(files, dict) else {}


def file_stat(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def check_files(root: Path, paths: list[Path], max_pixels: int, workers: int,
                console: Console | None = None) -> dict[Path, str | None]:
    """{path: None (readable) or the reason it is not}, from the folder's index where a file is
    unchanged, from a check where it is new or changed; the index is then brought up to date."""
    console = console or Console(stderr=True)
    location = index_file(root, max_pixels)
    known = read_index(location)
    names = [str(path.relative_to(root)) for path in paths]
    stats = [file_stat(path) for path in paths]
    todo = [i for i, (name, stat) in enumerate(zip(names, stats))
            if stat is not None and (name not in known or known[name][:2] != stat)]
    probes = probe_all([paths[i] for i in todo], max_pixels, workers, console)
    entries = {name: known[name] for name, stat in zip(names, stats) if stat is not None and name in known}
    entries.update({names[i]: [*stats[i], *found] for i, found in zip(todo, probes)})
    if todo or len(entries) != len(known):
        save_index(location, root, max_pixels, entries)
    return {path: entries[name][4] if stat is not None else f"{path}: missing" for path, name, stat in
            zip(paths, names, stats)}


def save_index(location: Path, root: Path, max_pixels: int, entries: dict) -> None:
    try:
        location.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic({"version": VERSION, "root": str(root.resolve()), "max_pixels": max_pixels,
                           "files": entries}, location)
    except OSError:
        pass  # a read-only cache: the next run checks again
