"""Index batching over tensors that already live on the training device (airbench style)."""

import math

import torch

from cnnexp.data.image_data import Split


class TensorBatches:
    """Minibatches of a `Split` by index: one permutation per epoch, no DataLoader, no per-sample Python.

    `order()` draws the epoch's sample order; `iterate(order, start)` yields (uint8 images, labels)
    from batch `start` on, which lets a checkpoint taken mid-epoch resume exactly.

    `shard=(rank, world_size)`: a data-parallel process takes its consecutive part of every batch
    of the one order all processes draw alike (`batch_size` is the global batch).
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 shard: tuple[int, int] = (0, 1)):
        self.split = split
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = shard

    def part(self, index: torch.Tensor) -> torch.Tensor:
        """This process's share of one batch of indices."""
        return index.tensor_split(self.world_size)[self.rank] if self.world_size > 1 else index

    def global_size(self, i: int) -> int:
        """The number of images in batch i over all processes."""
        return min(self.batch_size, len(self.split) - i * self.batch_size)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        n = len(self.split)
        device = self.split.labels.device
        if self.shuffle:
            return torch.randperm(n, generator=generator, device=generator.device).to(device)
        return torch.arange(n, device=device)

    def iterate(self, order: torch.Tensor, start: int = 0):
        for i in range(start, len(self)):
            index = self.part(order[i * self.batch_size : (i + 1) * self.batch_size])
            yield self.split.images[index], self.split.labels[index]
