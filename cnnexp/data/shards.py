"""WebDataset tar shards (written by `cnnexp data build-shards`, read by `dataset=shards`) and the batches
that stream them, each data-parallel rank and DataLoader worker reading its own part of the shards.

A shard is a plain tar of samples in the WebDataset layout: `<key>.<image extension>` (the image
file's bytes) and `<key>.cls` (the class index as text). `shards.json` beside the shards names the
classes and, per split, its shards with their sample counts and labels (so that evaluation and the
run's counts need no pass over the data).

The order of an epoch, whatever the number of processes and workers (so that two processes reach
the weights of one, and a resumed run those of an uninterrupted one):
- the epoch's shard order is a permutation drawn from the run's generator (with a seed for the
  shuffle buffers), and it is what the checkpoint keeps as the epoch's order;
- the samples of the shards in that order form one stream, cut into `dataset.readers` consecutive
  ranges; each reader shuffles its range in seeded windows of `dataset.shuffle_buffer` samples;
- global batch k takes the k-th chunk of every reader (chunk sizes sum to the batch size; a reader's
  range is sized to its chunk, so all readers end together);
- rank p reads readers p, p + P, ... (P processes) and its DataLoader worker w every W-th of those, so
  a rank reads its own shards (a range boundary splits one shard between two readers) and never the
  others'. Resuming at batch k, a reader seeks to the window holding its chunk k.
"""

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cnnexp.data.images import UnreadableImage, decode_image, fit_image
from cnnexp.data.stream import LazyImages, as_batch
from cnnexp.utils.errors import UserError

FORMAT = "cnnexp-shards"
INDEX_NAME = "shards.json"
LABEL = "cls"
REBUILD = "rebuild the shards with `cnnexp data build-shards` (or restore the file)"


def sample_key(member_name: str) -> tuple[str, str]:
    """WebDataset's rule: `a/b.c.d` is sample `a/b`, field `c.d` (the key ends at the base name's first dot)."""
    folder, _, base = member_name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def damaged(path: Path, reason: str) -> UserError:
    return UserError(f"shard {path} is damaged ({reason}); {REBUILD} and resume")


class ShardFile:
    """One tar shard: its samples' members found from the headers (no image data read), read by position."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:")
            members = self.tar.getmembers()
        except FileNotFoundError:
            raise UserError(f"shard {path} is missing (it changed after the shards were built); {REBUILD} and resume")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise damaged(path, str(exc) or exc.__class__.__name__) from exc
        samples: dict[str, dict] = {}
        for member in members:
            if member.isfile():
                key, field = sample_key(member.name)
                samples.setdefault(key, {})[field] = member
        self.keys, self.fields = list(samples), list(samples.values())

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, position: int) -> tuple[bytes, int, str]:
        """(image bytes, label, member name) of the sample at `position`."""
        fields, key = self.fields[position], self.keys[position]
        if LABEL not in fields:
            raise UserError(f"shard {self.path} has no label for sample {key} (no {key}.{LABEL}); shards for training "
                            f"hold a class index per image: {REBUILD}")
        images = [member for field, member in fields.items() if field != LABEL and not field.endswith("json")]
        if not images:
            raise UserError(f"shard {self.path} has no image for sample {key}; {REBUILD}")
        try:
            label = int(self._bytes(fields[LABEL]).decode().strip())
        except ValueError as exc:
            raise UserError(f"shard {self.path}: the label of sample {key} is not a class index ({exc}); {REBUILD}")
        return self._bytes(images[0]), label, images[0].name

    def _bytes(self, member: tarfile.TarInfo) -> bytes:
        try:
            data = self.tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise damaged(self.path, str(exc) or exc.__class__.__name__) from exc
        if len(data) != member.size:
            raise damaged(self.path, f"{member.name} is cut short")
        return data

    def close(self) -> None:
        self.tar.close()


@dataclass(frozen=True)
class Decoding:
    """How a sample's image bytes become a uint8 H x W x C array."""

    channels: int
    size: tuple[int, int]
    resize: str
    max_pixels: int

    def __call__(self, data: bytes, name: str, shard: Path) -> np.ndarray:
        try:
            return fit_image(decode_image(data, name, self.channels, self.size, self.max_pixels), self.size, self.resize)
        except UnreadableImage as exc:
            raise damaged(shard, f"cannot decode {exc}") from exc


class ShardReads:
    """Samples of a split's shards by position in a given shard order, one shard open at a time."""

    def __init__(self, root: Path, names: list[str], counts: list[int], labels: list[list[int]]):
        self.root, self.names, self.counts, self.labels = root, names, counts, labels
        self.open: ShardFile | None = None

    def shard(self, j: int) -> ShardFile:
        path = self.root / self.names[j]
        if self.open is None or self.open.path != path:
            if self.open is not None:
                self.open.close()
            self.open = ShardFile(path)
            if len(self.open) < self.counts[j]:
                raise UserError(f"shard {path} holds {len(self.open)} samples, but {INDEX_NAME} counts "
                                f"{self.counts[j]} (it changed after the shards were built); {REBUILD} and resume")
        return self.open

    def sample(self, j: int, position: int) -> tuple[bytes, int, str, Path]:
        data, label, name = self.shard(j).read(position)
        expected = self.labels[j][position]
        if label != expected:
            raise UserError(f"shard {self.open.path}: sample {name} is labelled {label}, but {INDEX_NAME} says "
                            f"{expected} (the shard changed after it was built); {REBUILD} and resume")
        return data, label, name, self.open.path

    def span(self, order: list[int], start: int, stop: int):
        """The samples at stream positions [start, stop) of the shards taken in `order`."""
        offset = 0
        for j in order:
            count = self.counts[j]
            lo, hi = max(start - offset, 0), min(stop - offset, count)
            for position in range(lo, hi):
                yield self.sample(j, position)
            offset += count
            if offset >= stop:
                return


class ShardImages(LazyImages):
    """A split's images in its shards (in the listed order); `read` serves evaluation and samples,
    `make_batches` the training stream."""

    def __init__(self, root: Path, shards: list[dict], decoding: Decoding, workers: int, readers: int, buffer: int):
        self.root, self.shards, self.decoding = root, shards, decoding
        self.readers, self.buffer = int(readers), int(buffer)
        super().__init__((sum(s["count"] for s in shards), decoding.channels, *decoding.size), workers)
        self._reads, self._pid = None, None

    def reads_of(self) -> ShardReads:
        if self._pid != os.getpid():  # an open tar must not cross a fork
            self._reads = ShardReads(self.root, [s["name"] for s in self.shards], [s["count"] for s in self.shards],
                                     [s["labels"] for s in self.shards])
            self._pid = os.getpid()
        return self._reads

    def read(self, index: np.ndarray) -> torch.Tensor:
        reads, bounds = self.reads_of(), np.cumsum([0] + [s["count"] for s in self.shards])
        arrays = []
        for i in map(int, index):
            j = int(np.searchsorted(bounds, i, side="right")) - 1
            data, _, name, path = reads.sample(j, i - int(bounds[j]))
            arrays.append(self.decoding(data, name, path))
        return as_batch(arrays, self.shape[1:])

    def limit(self, n: int) -> "ShardImages":
        """The first n samples: whole shards, the last one cut."""
        kept, left = [], int(n)
        for shard in self.shards:
            if left <= 0:
                break
            take = min(left, shard["count"])
            kept.append({**shard, "count": take, "labels": shard["labels"][:take]})
            left -= take
        clone = self.to(self.device)
        clone.shards, clone._shape = kept, torch.Size((sum(s["count"] for s in kept), *self._shape[1:]))
        return clone

    def make_batches(self, split, batch_size: int, shuffle: bool, drop_last: bool, shard: tuple[int, int]):
        return ShardBatches(split, batch_size, shuffle, drop_last, shard)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reads": None, "_pid": None}


class ReaderPlan:
    """Where each reader's range lies in an epoch's stream of `n` samples and how much of a global
    batch it gives: chunk sizes sum to `batch_size`, range lengths are in proportion to them."""

    def __init__(self, n: int, batch_size: int, readers: int, drop_last: bool = False):
        self.chunks = [batch_size // readers + (r < batch_size % readers) for r in range(readers)]
        ends = np.cumsum(self.chunks)
        self.starts = [round(n * int(e) / batch_size) for e in [0, *ends[:-1]]]
        self.lengths = [round(n * int(e) / batch_size) - s for e, s in zip(ends, self.starts)]
        per_reader = [(length // c if drop_last else -(-length // c)) for length, c in zip(self.lengths, self.chunks) if c]
        self.steps = min(per_reader) if drop_last else max(per_reader)

    def chunk(self, r: int, k: int) -> tuple[int, int]:
        """Reader r's outputs [first, stop) that go into global batch k."""
        first = min(k * self.chunks[r], self.lengths[r])
        return first, min(first + self.chunks[r], self.lengths[r])

    def global_size(self, k: int) -> int:
        return sum(stop - first for first, stop in (self.chunk(r, k) for r in range(len(self.chunks))))


def window_seed(seed: int, reader: int, window: int) -> int:
    return (seed * 1_000_003 + reader * 10_007 + window) % (2**63 - 1)


class _Reader:
    """One reader's outputs in its shuffled windows, from output `first` on (raw bytes; decoded per chunk)."""

    def __init__(self, reads: ShardReads, order: list[int], start: int, length: int, buffer: int,
                 seed: int | None, reader: int):
        self.reads, self.order, self.start, self.length = reads, order, start, length
        self.buffer, self.seed, self.reader = buffer, seed, reader

    def outputs(self, first: int):
        window = first // self.buffer
        skip = first - window * self.buffer
        while window * self.buffer < self.length:
            lo = self.start + window * self.buffer
            hi = self.start + min((window + 1) * self.buffer, self.length)
            samples = list(self.reads.span(self.order, lo, hi))
            if self.seed is not None:
                generator = torch.Generator().manual_seed(window_seed(self.seed, self.reader, window))
                samples = [samples[i] for i in torch.randperm(len(samples), generator=generator).tolist()]
            yield from samples[skip:]
            skip, window = 0, window + 1


class _RankStream(IterableDataset):
    """Item per global batch k (from `start`): this worker's readers' chunks, decoded, with their sizes."""

    def __init__(self, images: ShardImages, plan: ReaderPlan, readers: list[int], order: torch.Tensor, shuffle: bool,
                 start: int):
        self.images, self.plan, self.readers, self.start = images, plan, readers, start
        self.seed, self.order = int(order[0]), order[1:].tolist()
        self.shuffle = shuffle

    def __iter__(self):
        info = get_worker_info()
        mine = self.readers[info.id :: info.num_workers] if info else self.readers
        shards = self.images.shards
        streams = {}
        for r in mine:
            reads = ShardReads(self.images.root, [s["name"] for s in shards], [s["count"] for s in shards],
                               [s["labels"] for s in shards])
            reader = _Reader(reads, self.order, self.plan.starts[r], self.plan.lengths[r], self.images.buffer,
                             self.seed if self.shuffle else None, r)
            streams[r] = reader.outputs(self.plan.chunk(r, self.start)[0])
        for k in range(self.start, self.plan.steps):
            arrays, labels, sizes = [], [], []
            for r in mine:
                first, stop = self.plan.chunk(r, k)
                for _ in range(stop - first):
                    data, label, name, path = next(streams[r])
                    arrays.append(self.images.decoding(data, name, path))
                    labels.append(label)
                sizes.append(stop - first)
            yield k, mine, sizes, as_batch(arrays, self.images.shape[1:]), torch.tensor(labels, dtype=torch.int64)


class ShardBatches:
    """The `TensorBatches` interface (order, iterate, len, global_size) over a split in shards; see the
    module's docstring for the order. `shard=(rank, world_size)`; `batch_size` is the global batch."""

    def __init__(self, split, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 shard: tuple[int, int] = (0, 1)):
        self.split, self.batch_size, self.shuffle = split, int(batch_size), shuffle
        self.rank, self.world_size = shard
        images: ShardImages = split.images
        if images.readers < self.world_size:
            raise UserError(f"dataset.readers={images.readers} is below the {self.world_size} training processes; "
                            f"set dataset.readers to a multiple of {self.world_size}")
        if self.batch_size < images.readers:
            raise UserError(f"trainer.batch_size={self.batch_size} is below dataset.readers={images.readers} (every "
                            f"reader gives each batch an image at least); lower dataset.readers")
        self.plan = ReaderPlan(len(images), self.batch_size, images.readers, drop_last)
        self.readers = list(range(self.rank, images.readers, self.world_size))

    def __len__(self) -> int:
        return self.plan.steps

    def global_size(self, k: int) -> int:
        return self.plan.global_size(k)

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """[seed of the shuffle buffers, the shard order]: what the checkpoint keeps of an epoch."""
        shards = len(self.split.images.shards)
        if not self.shuffle:
            return torch.cat([torch.zeros(1, dtype=torch.int64), torch.arange(shards)])
        device = generator.device
        seed = torch.randint(0, 2**62, (1,), generator=generator, device=device).cpu()
        return torch.cat([seed, torch.randperm(shards, generator=generator, device=device).cpu()])

    def iterate(self, order: torch.Tensor, start: int = 0):
        images: ShardImages = self.split.images
        stream = _RankStream(images, self.plan, self.readers, order.cpu(), self.shuffle, start)
        workers = min(images.workers, len(self.readers))
        loader = DataLoader(stream, batch_size=None, num_workers=workers, generator=torch.Generator(),
                            pin_memory=images.device.type == "cuda")
        pending: dict[int, list] = {}
        try:
            for k, readers, sizes, pixels, labels in loader:
                pending.setdefault(k, []).append((readers, sizes, pixels, labels))
                if len(pending[k]) == max(workers, 1):
                    pixels, labels = in_reader_order(pending.pop(k))
                    yield pixels.to(images.device, non_blocking=True), labels.to(self.split.labels.device)
        except UserError as exc:  # from a worker: its message comes wrapped in the worker's traceback
            raise UserError(str(exc).strip().splitlines()[-1].split("UserError: ", 1)[-1]) from exc


def in_reader_order(parts: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The workers' chunks of one batch put in reader order (so the batch is the same whatever the workers)."""
    chunks = {}
    for readers, sizes, pixels, labels in parts:
        for r, p, lab in zip(readers, pixels.split(sizes), labels.split(sizes)):
            chunks[r] = (p, lab)
    ordered = [chunks[r] for r in sorted(chunks)]
    return torch.cat([p for p, _ in ordered]), torch.cat([lab for _, lab in ordered])
