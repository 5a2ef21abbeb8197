"""`cnnexp data build-hdf5`: an image folder -> one HDF5 file in the layout `data/sources/hdf5.py` reads.

The file is written under a temporary name and renamed when complete, so a file with the right name
is never half written; the training mean is also written beside it as `<stem>_mean.json`.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnexp.utils.choices import SPLITS
from cnnexp.data.images import assign_splits, image_size, scan_folder
from cnnexp.data.sources.folder import FileImages, decode_all, report_unreadable, user_path
from cnnexp.data.sources.hdf5 import FORMAT, channel_names
from cnnexp.utils.errors import UserError
from cnnexp.utils.files import temporary_name



@dataclass
class BuildReport:
    out: Path
    names: list
    shape: tuple  # H x W x C
    counts: dict = field(default_factory=dict)  # split -> per-class counts
    mean: list = field(default_factory=list)
    std: list = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0


class ChannelStats:
    """Running per-channel sum and sum of squares of uint8 N x C x H x W batches (float64)."""

    def __init__(self, channels: int):
        self.total, self.total_sq, self.count = np.zeros(channels), np.zeros(channels), 0

    def add(self, images: torch.Tensor) -> None:
        for chunk in images.split(16):  # float64 copies of a few images at a time
            values = chunk.double().transpose(0, 1).reshape(chunk.shape[1], -1)
            self.total += values.sum(1).numpy()
            self.total_sq += (values**2).sum(1).numpy()
            self.count += values.shape[1]

    def result(self) -> tuple[list[float], list[float]]:
        mean = self.total / max(self.count, 1)
        std = np.sqrt(np.maximum(self.total_sq / max(self.count, 1) - mean**2, 0))
        return mean.tolist(), std.tolist()


def write_split(handle, name: str, files: FileImages, labels: np.ndarray, options: dict, progress,
                stats: ChannelStats | None) -> tuple[np.ndarray, list[str]]:
    """Decode and write one split `buffer` images at a time; returns the labels kept and the failures."""
    n, c, h, w = files.shape
    chunk_rows = max(1, min(n, 2**20 // (h * w * c)))
    group = handle.create_group(name)
    images = group.create_dataset("images", (n, h, w, c), np.uint8, maxshape=(None, h, w, c),
                                  chunks=(chunk_rows, h, w, c) if n else None, compression=options["compression"])
    kept, bad, written = [], [], 0
    task = progress.add_task(name, total=n)
    for start in range(0, n, options["buffer"]):
        part = files.subset(list(range(start, min(start + options["buffer"], n))))
        pixels, good, unreadable = decode_all(part, keep_pixels=True)
        images[written : written + len(good)] = pixels.permute(0, 2, 3, 1).numpy()
        written += len(good)
        kept += [labels[start + i] for i in good]
        bad += unreadable
        if stats is not None and len(good):
            stats.add(pixels)
        progress.advance(task, len(part))
    images.resize(written, axis=0)
    group.create_dataset("labels", data=np.asarray(kept, dtype=np.int64))
    return np.asarray(kept, dtype=np.int64), bad


def build_hdf5(opts, progress) -> BuildReport:
    """`cnnexp data build-hdf5`: opts is the merged `conf/data_build_hdf5.yaml` node."""
    import h5py

    src, out = user_path(opts.src, "src"), user_path(opts.out, "out")
    size, channels, resize = image_size(opts.size), opts.channels, opts.resize
    names, found = scan_folder(src)
    samples = assign_splits(found, opts.split, opts.seed)
    rng = np.random.default_rng(opts.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(out)
    report = BuildReport(out, names, (*size, channels))
    stats, bad, started = ChannelStats(channels), [], time.perf_counter()
    options = {"compression": opts.compression, "buffer": opts.buffer}
    with h5py.File(tmp, "w") as handle:
        for name in SPLITS:
            items = [samples[name][i] for i in rng.permutation(len(samples[name]))]  # mixed classes in every block
            files = FileImages([p for p, _ in items], channels, size, resize, opts.workers, opts.max_pixels)
            labels, unreadable = write_split(handle, name, files, np.array([lab for _, lab in items], np.int64),
                                             options, progress, stats if name == "train" else None)
            bad += unreadable
            report.counts[name] = np.bincount(labels, minlength=len(names)).tolist()
        report.mean, report.std = stats.result()
        handle.attrs.update({"format": FORMAT, "version": 1, "label_names": np.array(names, dtype=h5py.string_dtype()), "mean": report.mean,
                             "std": report.std, "size": list(size), "channels": channels, "resize": resize,
                             "source": str(src)})
    try:
        report_unreadable(bad, src, opts.strict, key="strict")
    except UserError:
        tmp.unlink()
        raise
    os.replace(tmp, out)
    mean_json = out.with_name(f"{out.stem}_mean.json")
    mean_json.write_text(json.dumps(dict(zip(channel_names(channels), report.mean)), indent=2) + "\n")
    report.skipped, report.seconds = len(bad), time.perf_counter() - started
    return report
