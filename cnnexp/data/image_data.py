"""In-memory image datasets: uint8 N x C x H x W tensors with int64 labels, per split."""

from dataclasses import dataclass, field

import torch

from cnnexp.utils.errors import UserError


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    # Other labels of the same images, by field name (UTKFace: age group, gender, race), one string per
    # image in the images' order: what `eval by=<field>` breaks the metrics down by. Empty for most sources.
    fields: dict[str, list[str]] = field(default_factory=dict)
    # The image files, in the images' order, when the images came from files (folder, utkface, table):
    # what eval names misclassified images by. None for sources without files (Olivetti, MNIST, HDF5).
    paths: list | None = None

    def __len__(self) -> int:
        return self.labels.numel()

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device), self.fields, self.paths)

    def limit(self, n: int | None) -> "Split":
        if n is None:
            return self
        images = self.images.limit(n) if hasattr(self.images, "limit") else self.images[:n]  # LazyImages stay lazy
        return Split(images, self.labels[:n], {k: v[:n] for k, v in self.fields.items()},
                     None if self.paths is None else self.paths[:n])


@dataclass
class ImageData:
    splits: dict[str, Split]
    class_names: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.splits["train"].images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in self.splits or len(self.splits[name]) == 0:
            have = ", ".join(k for k, v in self.splits.items() if len(v))
            raise UserError(f"this dataset has no '{name}' split; use one of: {have}")
        return self.splits[name]

    def to(self, device) -> "ImageData":
        return ImageData({k: v.to(device) for k, v in self.splits.items()}, self.class_names, self.meta)

    def limit(self, n: int | None) -> "ImageData":
        """Keep at most n images per split (quick runs and tests)."""
        return ImageData({k: v.limit(n) for k, v in self.splits.items()}, self.class_names, self.meta)
