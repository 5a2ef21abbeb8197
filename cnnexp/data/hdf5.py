"""HDF5 image datasets, as in the dogs-vs-cats tutorial: build one file from an image folder, read it back.

Layout: a group per split (`train`, `val`, `test`) holding `images` (uint8 N x H x W x C, chunked)
and `labels` (int64 N); file attributes `format`, `label_names`, `mean` and `std` (per channel,
0..255, training images only). `mean` is also written beside the file as `<stem>_mean.json`
({"R": .., "G": .., "B": ..}, the tutorial's file). The file is written under a temporary name and
renamed when complete, so a file with the right name is never half written.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnexp.data import register_dataset
from cnnexp.data.folder import FileImages, decode_all, report_unreadable, user_path
from cnnexp.data.image_data import SPLITS, ImageData, Split
from cnnexp.data.images import assign_splits, check_options, image_size, scan_folder
from cnnexp.data.stream import LazyImages, fits_in_memory
from cnnexp.errors import UserError

FORMAT = "cnnexp-hdf5"
COMPRESSIONS = (None, "gzip", "lzf")
MEAN_MODES = ("stored", "train")


def open_h5(path: Path):
    """An open cnnexp HDF5 file, or a one-line error for a missing, foreign or truncated one."""
    import h5py

    if not path.is_file():
        raise UserError(f"HDF5 file {path} not found; build it with `cnnexp data build-hdf5 src=<folder> out={path}`")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise UserError(f"{path} is not a readable HDF5 file ({reason}); rebuild it with `cnnexp data build-hdf5`")
    if handle.attrs.get("format") != FORMAT or "train" not in handle:
        handle.close()
        raise UserError(f"{path} is an HDF5 file but not one cnnexp built (no '{FORMAT}' format attribute or no "
                        "train group); build one with `cnnexp data build-hdf5 src=<folder> out=<file.h5>`")
    return handle


def channel_names(channels: int) -> list[str]:
    return ["R", "G", "B"] if channels == 3 else ["L"]


class H5Images(LazyImages):
    """One split's `images` dataset, read a batch at a time; the file opens once per process."""

    contiguous = True

    def __init__(self, path: Path, group: str, shape_nhwc: tuple, workers: int = 2):
        n, h, w, c = shape_nhwc
        super().__init__((n, c, h, w), workers)
        self.path, self.group = path, group
        self._handle, self._pid = None, None

    def _dataset(self):
        if self._pid != os.getpid():  # h5py handles must not cross a fork
            self._handle, self._pid = open_h5(self.path), os.getpid()
        return self._handle[self.group]["images"]

    def read(self, index: np.ndarray) -> torch.Tensor:
        index = np.asarray(index, dtype=np.int64)
        dataset = self._dataset()
        if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
            array = dataset[index[0] : index[0] + len(index)]
        else:  # h5py wants increasing indices: read sorted, put back in the asked order
            unique, inverse = np.unique(index, return_inverse=True)
            array = dataset[unique][inverse] if len(index) else np.empty((0, *dataset.shape[1:]), np.uint8)
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": None}


def read_split(handle, path: Path, group: str, in_memory: bool, workers: int) -> Split:
    try:
        images, labels = handle[group]["images"], torch.from_numpy(handle[group]["labels"][:].astype(np.int64))
        if in_memory:
            return Split(torch.from_numpy(images[:]).permute(0, 3, 1, 2).contiguous(), labels)
    except (KeyError, OSError) as exc:
        raise UserError(f"{path}: cannot read split '{group}' ({exc}); the file is damaged, rebuild it") from exc
    return Split(H5Images(path, group, images.shape, workers), labels)


@register_dataset
def hdf5(cfg, seed: int = 0) -> ImageData:
    path = user_path(cfg.path, "dataset.path")
    if cfg.mean not in MEAN_MODES:
        raise UserError(f"dataset.mean={cfg.mean} is not one of: {', '.join(MEAN_MODES)}")
    with open_h5(path) as handle:
        groups = [g for g in SPLITS if g in handle]
        n_bytes = sum(handle[g]["images"].size for g in groups)
        in_memory = fits_in_memory(cfg.in_memory, n_bytes, cfg.memory_limit_mb)
        splits = {g: read_split(handle, path, g, in_memory, int(cfg.workers)) for g in groups}
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in handle.attrs["label_names"]]
        stats = [float(v) for v in handle.attrs["mean"]], [float(v) for v in handle.attrs["std"]]
    meta = {"source": str(path), "in_memory": in_memory}
    if cfg.mean == "stored":
        meta["channel_stats"] = stats
    return ImageData(splits, names, meta)


# ---- building ------------------------------------------------------------------------------------
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
    size, channels, resize = image_size(opts.size), int(opts.channels), str(opts.resize)
    check_options(channels, resize)
    if opts.compression not in COMPRESSIONS:
        raise UserError(f"compression={opts.compression} is not one of: none (null), gzip, lzf")
    if int(opts.buffer) < 1:
        raise UserError(f"buffer={opts.buffer} must be at least 1")
    names, found = scan_folder(src)
    samples = assign_splits(found, opts.split, int(opts.seed))
    rng = np.random.default_rng(int(opts.seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    report = BuildReport(out, names, (*size, channels))
    stats, bad, started = ChannelStats(channels), [], time.perf_counter()
    options = {"compression": opts.compression, "buffer": int(opts.buffer)}
    with h5py.File(tmp, "w") as handle:
        for name in SPLITS:
            items = [samples[name][i] for i in rng.permutation(len(samples[name]))]  # mixed classes in every block
            files = FileImages([p for p, _ in items], channels, size, resize, int(opts.workers))
            labels, unreadable = write_split(handle, name, files, np.array([lab for _, lab in items], np.int64),
                                             options, progress, stats if name == "train" else None)
            bad += unreadable
            report.counts[name] = np.bincount(labels, minlength=len(names)).tolist()
        report.mean, report.std = stats.result()
        handle.attrs.update({"format": FORMAT, "version": 1, "label_names": np.array(names, dtype=h5py.string_dtype()), "mean": report.mean,
                             "std": report.std, "size": list(size), "channels": channels, "resize": resize,
                             "source": str(src)})
    try:
        report_unreadable(bad, src, bool(opts.strict), key="strict")
    except UserError:
        tmp.unlink()
        raise
    os.replace(tmp, out)
    mean_json = out.with_name(f"{out.stem}_mean.json")
    mean_json.write_text(json.dumps(dict(zip(channel_names(channels), report.mean)), indent=2) + "\n")
    report.skipped, report.seconds = len(bad), time.perf_counter() - started
    return report
