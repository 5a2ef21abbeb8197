"""`dataset=folder`: a folder of class folders (or of train/ validation/ test/ class folders).

Every file is checked before training starts, once: the folder's index (cnnexp/data/index.py)
remembers which files are readable, and later runs re-check only the files that changed or are new
(`dataset.check=false` skips the check). An unreadable file is skipped with one warning that counts
them (or, with `dataset.strict=true`, reported by name). The readable files are then decoded into
memory when they fit (`dataset.in_memory=auto`), otherwise the training loop streams from them.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from cnnexp.data.registry import register_dataset
from cnnexp.data.image_data import ImageData, Split
from cnnexp.data.index import check_files
from cnnexp.data.images import UnreadableImage, assign_splits, image_size, read_image, scan_folder
from cnnexp.data.stream import LazyImages, as_batch, fits_in_memory
from cnnexp.utils.errors import UserError

PROBE_SIZE = (8, 8)  # checking a JPEG decodes it at 1/8 scale: every byte read, little work


class FileImages(LazyImages):
    """Image files decoded to one channel count and size when read; a file whose header gives more
    than `max_pixels` pixels is unreadable."""

    def __init__(self, paths: list[Path], channels: int, size: tuple[int, int], resize: str, workers: int,
                 max_pixels: int, skip_unreadable: bool = False):
        super().__init__((len(paths), channels, *size), workers)
        self.paths, self.channels, self.size, self.resize = list(paths), channels, size, resize
        self.max_pixels, self.skip_unreadable = max_pixels, skip_unreadable

    def decode(self, i: int, size=None) -> np.ndarray:
        return read_image(self.paths[i], self.channels, size or self.size, self.resize, self.max_pixels)

    def read(self, index: np.ndarray) -> torch.Tensor:
        try:
            arrays = [self.decode(int(i)) for i in index]
        except UnreadableImage as exc:
            if self.skip_unreadable:
                raise UserError(f"cannot read {exc}; dataset.check=false skips unreadable files only in `cnnexp train` "
                                "(training and its evaluations): remove it, or check the folder first "
                                "(dataset.check=true)")
            raise UserError(f"cannot read {exc} (it changed after the start of the run); restore it and resume")
        return as_batch(arrays, self.shape[1:])

    def read_kept(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
        if not self.skip_unreadable:
            return self.read(index), None, []
        arrays, kept, reasons = [], [], []
        for position, i in enumerate(map(int, index)):
            try:
                arrays.append(self.decode(i))
                kept.append(position)
            except UnreadableImage as exc:
                reasons.append(str(exc))
        return as_batch(arrays, self.shape[1:]), torch.tensor(kept, dtype=torch.int64), reasons

    def subset(self, keep: list[int]) -> "FileImages":
        return FileImages([self.paths[i] for i in keep], self.channels, self.size, self.resize, self.workers,
                          self.max_pixels, self.skip_unreadable)


class _Attempt(FileImages):
    """`read` that reports failures instead of raising: (images of the readable files, their
    positions, [(position, reason)] of the others). `probe` checks without keeping pixels."""

    def __init__(self, files: FileImages, probe: bool):
        super().__init__(files.paths, files.channels, files.size, files.resize, files.workers, files.max_pixels)
        self.probe = probe

    def read(self, index: np.ndarray):
        good, arrays, bad = [], [], []
        for i in map(int, index):
            try:
                array = self.decode(i, PROBE_SIZE if self.probe else None)
            except UnreadableImage as exc:
                bad.append((i, str(exc)))
                continue
            good.append(i)
            arrays.append(array)
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) if arrays and not self.probe else None
        return images, good, bad


def decode_all(files: FileImages, keep_pixels: bool) -> tuple[torch.Tensor | None, list[int], list[str]]:
    """Decode (or, without keep_pixels, check) every file in the workers: (images, readable positions,
    reasons for the unreadable ones). The images are written into one tensor allocated once, in
    order; the rows of unreadable files are closed up in place."""
    attempt = _Attempt(files, probe=not keep_pixels)
    n = len(files)
    chunks = [np.arange(i, min(i + 32, n)) for i in range(0, n, 32)]
    pixels = torch.empty(files.shape, dtype=torch.uint8) if keep_pixels else None
    good, bad = [], []
    for chunk_images, chunk_good, chunk_bad in attempt.reads(chunks):
        if chunk_images is not None:
            pixels[len(good) : len(good) + len(chunk_good)] = chunk_images
        good += chunk_good
        bad += [reason for _, reason in chunk_bad]
    return (pixels[: len(good)] if keep_pixels else None), good, bad


def report_unreadable(bad: list[str], root: Path, strict: bool, key: str = "dataset.strict") -> None:
    """One warning counting the skipped files; with strict, an error naming the first."""
    if not bad:
        return
    if strict:
        raise UserError(f"cannot read {bad[0]}; remove it, or set {key}=false to skip unreadable files")
    sys.stderr.write(f"warning: skipped {len(bad)} unreadable or non-image file{'s' if len(bad) > 1 else ''} "
                     f"under {root} (first: {bad[0]}); {key}=true makes this an error\n")


def user_path(value, key: str) -> Path:
    """A path from the command line, relative to where the user ran cnnexp (no command changes the
    working folder: hydra.job.chdir is false, and a Hydra job earlier in the same process, as in a
    notebook, must not leave its folder behind as the base)."""
    if not value:
        raise UserError(f"{key} is not set; give {key}=<path>")
    return Path(str(value)).expanduser().absolute()


def load_split(files: FileImages, labels: list[int], in_memory: bool, bad: list[str]) -> Split:
    """The split's images decoded into memory, or left in their files to stream."""
    if not in_memory:
        return Split(files, torch.tensor(labels, dtype=torch.int64), paths=files.paths)
    pixels, good, unreadable = decode_all(files, keep_pixels=True)
    bad += unreadable  # files that changed since they were checked
    kept, kept_files = torch.tensor([labels[i] for i in good], dtype=torch.int64), files.subset(good)
    return Split(pixels, kept, paths=kept_files.paths)


def readable_samples(root: Path, samples: dict[str, list], cfg, max_pixels: int, bad: list[str]) -> dict[str, list]:
    """The samples of the files found readable (by the index, or by checking them); the reasons for
    the others are added to `bad`. Unchecked with dataset.check=false."""
    if not cfg.check:
        return samples
    reasons = check_files(root, [path for items in samples.values() for path, _ in items], max_pixels, cfg.workers)
    bad += [reasons[path] for items in samples.values() for path, _ in items if reasons[path]]
    return {split: [(path, label) for path, label in items if not reasons[path]] for split, items in samples.items()}


@register_dataset
def folder(cfg, seed: int = 0) -> ImageData:
    root = user_path(cfg.root, "dataset.root")
    size, channels, resize, max_pixels = image_size(cfg.size), cfg.channels, cfg.resize, cfg.max_pixels
    names, found = scan_folder(root)
    bad = []
    samples = readable_samples(root, assign_splits(found, cfg.split, seed), cfg, max_pixels, bad)
    n_bytes = sum(map(len, samples.values())) * channels * size[0] * size[1]
    in_memory = fits_in_memory(cfg.in_memory, n_bytes, cfg.memory_limit_mb)
    splits = {}
    for name, items in samples.items():
        files = FileImages([path for path, _ in items], channels, size, resize, cfg.workers, max_pixels,
                           skip_unreadable=not cfg.check)
        splits[name] = load_split(files, [label for _, label in items], in_memory, bad)
    report_unreadable(bad, root, cfg.strict)
    if len(splits["train"]) == 0:
        raise UserError(f"no readable training images under {root}")
    return ImageData(splits, names, meta={"source": str(root), "in_memory": in_memory, "skipped": len(bad)})
