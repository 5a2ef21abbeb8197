"""HDF5 image datasets, as in the dogs-vs-cats tutorial (built by `data/tools/build_hdf5.py`).

Layout: a group per split (`train`, `val`, `test`) holding `images` (uint8 N x H x W x C, chunked)
and `labels` (int64 N); file attributes `format`, `label_names`, `mean` and `std` (per channel,
0..255, training images only). `mean` is also written beside the file as `<stem>_mean.json`
({"R": .., "G": .., "B": ..}, the tutorial's file). The file is written under a temporary name and
renamed when complete, so a file with the right name is never half written.
"""

import os
from pathlib import Path

import numpy as np
import torch

from cnnexp.data.registry import register_dataset
from cnnexp.data.sources.folder import user_path
from cnnexp.data.image_data import ImageData, Split
from cnnexp.utils.choices import SPLITS
from cnnexp.data.stream import LazyImages, fits_in_memory
from cnnexp.utils.errors import UserError

FORMAT = "cnnexp-hdf5"


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
        try:
            dataset = self._dataset()
            if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
                array = dataset[index[0] : index[0] + len(index)]
            else:  # h5py wants increasing indices: read sorted, put back in the asked order
                unique, inverse = np.unique(index, return_inverse=True)
                array = dataset[unique][inverse] if len(index) else np.empty((0, *dataset.shape[1:]), np.uint8)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:  # truncated or overwritten since the start
            raise UserError(f"cannot read {self.path} ({str(exc).strip().splitlines()[0][:120]}); it changed after "
                            f"the run started: restore or rebuild it and resume") from exc
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
    with open_h5(path) as handle:
        groups = [g for g in SPLITS if g in handle]
        n_bytes = sum(handle[g]["images"].size for g in groups)
        in_memory = fits_in_memory(cfg.in_memory, n_bytes, cfg.memory_limit_mb)
        splits = {g: read_split(handle, path, g, in_memory, cfg.workers) for g in groups}
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in handle.attrs["label_names"]]
        stats = [float(v) for v in handle.attrs["mean"]], [float(v) for v in handle.attrs["std"]]
    meta = {"source": str(path), "in_memory": in_memory}
    if cfg.mean == "stored":
        meta["channel_stats"] = stats
    return ImageData(splits, names, meta)
