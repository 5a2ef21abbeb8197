"""`cnnexp data build-shards`: an image folder -> WebDataset tar shards (`<split>-NNNNNN.tar`, written with
webdataset's ShardWriter) and `shards.json` in the layout `data/shards.py` reads.

Every file is checked first (through the folder's index, so a folder checked before is not decoded
again); unreadable files are skipped with one warning (an error with strict=true). With `size` null a
sample holds the image file's own bytes (the WebDataset custom); with a size, the image decoded,
brought to that size and stored as a JPEG of `quality` (smaller shards, faster to decode). The shards
are written into a hidden folder beside `out` and renamed to it when complete, so `out` never holds
half a build.
"""

import io
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnnexp.utils.choices import SPLITS
from cnnexp.data.images import assign_splits, image_size, read_image, scan_folder
from cnnexp.data.shards import FORMAT, INDEX_NAME, LABEL
from cnnexp.data.sources.folder import readable_samples, report_unreadable, user_path
from cnnexp.utils.errors import UserError
from cnnexp.utils.files import write_json_atomic

CHUNK = 32  # files per task handed to a worker


@dataclass
class ShardsReport:
    out: Path
    names: list
    counts: dict = field(default_factory=dict)  # split -> per-class counts
    shards: int = 0
    bytes: int = 0
    skipped: int = 0
    seconds: float = 0.0


class _Encoded(Dataset):
    """Item i: (extension, bytes) of chunk i of the files: the file itself, or re-encoded at `size`."""

    def __init__(self, paths: list[Path], size, channels: int, resize: str, quality: int, max_pixels: int):
        self.paths, self.size, self.channels, self.resize, self.quality = paths, size, channels, resize, quality
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return -(-len(self.paths) // CHUNK)

    def __getitem__(self, i: int) -> list[tuple[str, bytes]]:
        return [self.encode(path) for path in self.paths[i * CHUNK : (i + 1) * CHUNK]]

    def encode(self, path: Path) -> tuple[str, bytes]:
        if self.size is None:
            return path.suffix.lower().lstrip(".") or "img", path.read_bytes()
        array = read_image(path, self.channels, self.size, self.resize, self.max_pixels)
        buffer = io.BytesIO()
        Image.fromarray(array[:, :, 0] if self.channels == 1 else array).save(buffer, "JPEG", quality=self.quality)
        return "jpg", buffer.getvalue()


def write_split(folder: Path, name: str, items: list, options: dict, progress) -> list[dict]:
    """The split's samples into shards of at most `shard_size` samples / `shard_mb` MiB: [{name, count, labels}]."""
    import webdataset

    if not items:
        return []
    encoded = _Encoded([path for path, _ in items], options["size"], options["channels"], options["resize"],
                       options["quality"], options["max_pixels"])
    loader = DataLoader(encoded, batch_size=None, num_workers=min(options["workers"], len(encoded)),
                        collate_fn=lambda chunk: chunk)
    shards: dict[str, list[int]] = {}
    task = progress.add_task(name, total=len(items))
    pattern = str(folder / f"{name}-%06d.tar")
    with webdataset.ShardWriter(pattern, maxcount=options["shard_size"], maxsize=options["shard_mb"] * 2**20,
                                verbose=0) as writer:
        i = 0
        for chunk in loader:
            for extension, data in chunk:
                label = items[i][1]
                writer.write({"__key__": f"{i:09d}", extension: data, LABEL: str(label)})
                shards.setdefault(Path(writer.fname).name, []).append(label)
                i += 1
            progress.advance(task, len(chunk))
    return [{"name": shard, "count": len(labels), "labels": labels} for shard, labels in shards.items()]


def fresh_folder(out: Path) -> Path:
    """The hidden folder the shards are written into; `out` must not hold anything yet."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"out={out} already exists and is not an empty folder; remove it or choose another out=")
    building = out.with_name(f".{out.name}.building")
    shutil.rmtree(building, ignore_errors=True)  # what an interrupted build left
    building.mkdir(parents=True)
    return building


def build_shards(opts, progress) -> ShardsReport:
    """`cnnexp data build-shards`: opts is the merged `conf/data_build_shards.yaml` node."""
    src, out = user_path(opts.src, "src"), user_path(opts.out, "out")
    size = image_size(opts.size) if opts.size is not None else None
    names, found = scan_folder(src)
    bad, started = [], time.perf_counter()
    samples = readable_samples(src, assign_splits(found, opts.split, int(opts.seed)), opts, int(opts.max_pixels), bad)
    report_unreadable(bad, src, bool(opts.strict), key="strict")
    building = fresh_folder(out)
    options = {"size": size, "channels": int(opts.channels), "resize": str(opts.resize), "quality": int(opts.quality),
               "max_pixels": int(opts.max_pixels), "shard_size": int(opts.shard_size), "shard_mb": int(opts.shard_mb),
               "workers": int(opts.workers)}
    rng, splits, report = np.random.default_rng(int(opts.seed)), {}, ShardsReport(out, names, skipped=len(bad))
    try:
        for name in SPLITS:
            items = [samples[name][i] for i in rng.permutation(len(samples.get(name, [])))]  # classes mixed
            shards = write_split(building, name, items, options, progress)
            counts = np.bincount([label for _, label in items], minlength=len(names)).tolist()
            splits[name] = {"count": len(items), "class_counts": counts, "shards": shards}
            report.counts[name], report.shards = counts, report.shards + len(shards)
        write_json_atomic({"format": FORMAT, "version": 1, "classes": names, "channels": int(opts.channels),
                           "size": list(size) if size else None, "resize": str(opts.resize), "source": str(src),
                           "splits": splits}, building / INDEX_NAME)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    os.replace(building, out)
    report.bytes = sum(path.stat().st_size for path in out.iterdir())
    report.seconds = time.perf_counter() - started
    return report
