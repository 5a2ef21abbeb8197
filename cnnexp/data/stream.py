"""Images that stay in their files (an image folder, an HDF5 file) and are read batch by batch in
DataLoader worker processes, for datasets too large to hold in memory.

`LazyImages` stands in for the uint8 N x C x H x W tensor of an in-memory `Split` wherever the
engine touches one (shape, slicing, `.split(n)` for evaluation, `.to(device)`), so training and
evaluation code is the same for both; `make_batches` picks index batching or streaming.
Augmentation and normalisation stay on the training device for both (the same `Pipeline`), so a
streamed run sees exactly the inputs an in-memory run would.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cnnexp.data.batches import TensorBatches
from cnnexp.utils.errors import UserError


class _Reads(Dataset):
    """Item i = source.read(batches[i]) (or `read_kept`): one DataLoader item is a whole batch."""

    def __init__(self, source, batches: list[np.ndarray], kept: bool = False):
        self.source, self.batches, self.kept = source, batches, kept

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        return self.source.read_kept(self.batches[i]) if self.kept else self.source.read(self.batches[i])


class LazyImages:
    """uint8 N x C x H x W images read on demand; subclasses implement `read(index)`.

    `contiguous` sources (HDF5) read consecutive rows far faster than scattered ones, so shuffled
    training reads them in shuffled blocks of consecutive rows (the file itself was shuffled when built).
    """

    contiguous = False

    def __init__(self, shape: tuple[int, int, int, int], workers: int = 2, device="cpu"):
        self._shape = torch.Size(shape)
        self.workers = int(workers)
        self.device = torch.device(device)
        self.dtype = torch.uint8

    def read(self, index: np.ndarray) -> torch.Tensor:
        """uint8 len(index) x C x H x W on the CPU (runs in a worker process)."""
        raise NotImplementedError

    def read_kept(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
        """(images, positions in `index` of the images read (None: all), reasons for the others): sources
        that skip unreadable files (a folder not checked first) drop them here instead of raising."""
        return self.read(index), None, []

    @property
    def shape(self) -> torch.Size:
        return self._shape

    def __len__(self) -> int:
        return self._shape[0]

    def numel(self) -> int:
        return self._shape.numel()

    def to(self, device) -> "LazyImages":
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__, device=torch.device(device))
        return clone

    def limit(self, n: int) -> "LazyImages":
        """The first n images, still in their files (slicing would read them)."""
        clone = self.to(self.device)
        clone._shape = torch.Size((min(int(n), len(self)), *self._shape[1:]))
        return clone

    def __getitem__(self, key) -> torch.Tensor:
        index = np.arange(len(self))[key] if isinstance(key, slice) else torch.as_tensor(key).cpu().numpy()
        return self.read(np.atleast_1d(index)).to(self.device)

    def reads(self, index_batches: list[np.ndarray], kept: bool = False):
        """Yield read(index) for each index batch, in order, computed by the workers. The loader gets
        a generator of its own: it would otherwise draw its worker seed from the global RNG, and a
        streamed run would see other dropout masks than the same run in memory."""
        loader = DataLoader(_Reads(self, index_batches, kept), batch_size=None, shuffle=False,
                            num_workers=min(self.workers, len(index_batches)),
                            pin_memory=self.device.type == "cuda", generator=torch.Generator())
        try:
            yield from loader
        except UserError as exc:  # from a worker: its message comes wrapped in the worker's traceback
            raise UserError(str(exc).strip().splitlines()[-1].split("UserError: ", 1)[-1]) from exc

    def batches(self, index_batches: list[np.ndarray]):
        """The images of each index batch, on the device."""
        for images in self.reads(index_batches):
            yield images.to(self.device, non_blocking=True)

    def split(self, size: int):
        """Consecutive chunks of at most `size` images, as `Tensor.split` (used by evaluation)."""
        n = len(self)
        yield from self.batches([np.arange(i, min(i + size, n)) for i in range(0, n, size)])


def as_batch(arrays: list[np.ndarray], chw: tuple) -> torch.Tensor:
    """uint8 N x C x H x W from H x W x C arrays (N may be 0)."""
    if not arrays:
        return torch.empty((0, *chw), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def labelled_chunks(split, size: int, skipped: list[str], starts=None):
    """(images, labels) of the chunks of at most `size` images of a split that begin at `starts` (by
    default every `size`-th image: all of them), on the images' device (evaluation). A source that
    skips unreadable files (a folder with dataset.check=false) leaves them out with their labels,
    and their reasons are added to `skipped`."""
    images, labels, n = split.images, split.labels, len(split.labels)
    starts = range(0, n, size) if starts is None else starts
    if not isinstance(images, LazyImages):
        for start in starts:
            yield images[start : start + size], labels[start : start + size]
        return
    index = [np.arange(start, min(start + size, n)) for start in starts]
    for (pixels, kept, reasons), rows in zip(images.reads(index, kept=True), index):
        skipped += reasons
        rows = torch.from_numpy(rows) if kept is None else torch.from_numpy(rows)[kept]
        if len(rows):
            yield pixels.to(images.device, non_blocking=True), labels[rows.to(labels.device)]


def first_images(images, n: int) -> torch.Tensor:
    """Up to the first n images (those readable, where a source skips unreadable files), for a picture."""
    if isinstance(images, LazyImages):
        return images.read_kept(np.arange(min(n, len(images))))[0].to(images.device)
    return images[:n]


def block_order(n: int, block: int, generator: torch.Generator) -> torch.Tensor:
    """A shuffled order of whole blocks of `block` consecutive rows (the short last block stays last,
    so every batch is one contiguous read)."""
    full = n // block
    blocks = torch.randperm(full, generator=generator, device=generator.device).cpu()
    order = (blocks[:, None] * block + torch.arange(block)).reshape(-1)
    return torch.cat([order, torch.arange(full * block, n)])


class StreamBatches(TensorBatches):
    """`TensorBatches` for a split whose images are `LazyImages`: the same order/iterate interface,
    with batches decoded in DataLoader workers (a fresh pool per epoch, so a resumed epoch starts
    at its batch). `skipped`: the reasons for the files a source skipped while training (see `read_kept`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped: list[str] = []

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        images = self.split.images
        if self.shuffle and images.contiguous:
            return block_order(len(images), self.batch_size, generator)
        return super().order(generator).cpu()

    def iterate(self, order: torch.Tensor, start: int = 0):
        order = order.cpu()
        index = [self.part(order[i * self.batch_size : (i + 1) * self.batch_size]) for i in range(start, len(self))]
        labels, images = self.split.labels, self.split.images
        for (pixels, kept, reasons), rows in zip(images.reads([i.numpy() for i in index], kept=True), index):
            self.skipped += reasons
            rows = rows if kept is None else rows[kept]
            if len(rows):  # a batch whose every file was unreadable is left out
                yield pixels.to(images.device, non_blocking=True), labels[rows.to(labels.device)]


def make_batches(split, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> TensorBatches:
    """Index batches over in-memory tensors, or streamed batches over `LazyImages` (or the images' own,
    e.g. shards'); `shard`: see TensorBatches."""
    if hasattr(split.images, "make_batches"):
        return split.images.make_batches(split, batch_size, shuffle, drop_last, shard)
    kind = StreamBatches if isinstance(split.images, LazyImages) else TensorBatches
    return kind(split, batch_size, shuffle, drop_last, shard)


def fits_in_memory(setting, n_bytes: int, limit_mb: float) -> bool:
    """`dataset.in_memory`: true, false, or auto (decoded size at most `dataset.memory_limit_mb`)."""
    if setting in (True, False):
        return setting
    return n_bytes <= float(limit_mb) * 2**20
