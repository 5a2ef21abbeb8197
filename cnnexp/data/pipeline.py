"""Turning uint8 batches into model inputs on the device: augmentation, then normalisation.

Everything works on whole batches with per-sample random parameters drawn from one
`torch.Generator`, so the training loop has no per-image Python and runs where the data lives.
"""

import torch

from cnnexp.errors import UserError

NORMALIZE_MODES = ("none", "scale", "mean", "standardize")


class Normalizer:
    """Per-channel normalisation with statistics taken from the training split only."""

    def __init__(self, mode: str, mean: list[float], std: list[float]):
        if mode not in NORMALIZE_MODES:
            raise UserError(f"dataset.normalize={mode} is not one of: {', '.join(NORMALIZE_MODES)}")
        self.mode, self.mean, self.std = mode, list(mean), list(std)

    @classmethod
    def fit(cls, mode: str, train_images: torch.Tensor) -> "Normalizer":
        """Channel mean and std (in 0..255 units) of a uint8 N x C x H x W tensor, in chunks."""
        channels = train_images.shape[1]
        total = torch.zeros(channels, dtype=torch.float64)
        total_sq = torch.zeros(channels, dtype=torch.float64)
        for chunk in train_images.split(4096):
            values = chunk.to(torch.float64).transpose(0, 1).reshape(channels, -1)
            total += values.sum(1).cpu()
            total_sq += (values**2).sum(1).cpu()
        count = train_images.numel() // channels
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
        return cls(mode, mean.tolist(), std.tolist())

    def state_dict(self) -> dict:
        return {"mode": self.mode, "mean": self.mean, "std": self.std}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: float images in 0..255."""
        if self.mode == "none":
            return x
        if self.mode == "scale":
            return x / 255.0
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape)
        if self.mode == "mean":
            return (x - mean) / 255.0
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape)
        return (x - mean) / std


def random_crops(x: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """One random size[0] x size[1] window per sample, gathered in one indexing operation."""
    n, c, h, w = x.shape
    ch, cw = size
    top = torch.randint(0, h - ch + 1, (n,), generator=generator, device=generator.device).to(x.device)
    left = torch.randint(0, w - cw + 1, (n,), generator=generator, device=generator.device).to(x.device)
    rows = (top[:, None] + torch.arange(ch, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(cw, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, chans, rows, cols]


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def random_flips(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Augmentation:
    """Training-time augmentation of float batches; evaluation sees the deterministic centre view.

    Knobs (the `augmentation` config group): `crop_size` [H, W] for random patches (centre crop at
    evaluation, so models size themselves from the crop) and `flip` for random horizontal mirrors.
    """

    def __init__(self, cfg, image_shape: tuple[int, int, int]):
        self.name = cfg.get("name", "none")
        self.flip = bool(cfg.get("flip", False))
        crop = cfg.get("crop_size")
        _, h, w = image_shape
        self.crop_size = (h, w) if crop is None else (int(crop[0]), int(crop[1]))
        if not (0 < self.crop_size[0] <= h and 0 < self.crop_size[1] <= w):
            raise UserError(f"augmentation.crop_size={list(self.crop_size)} must fit inside the {h}x{w} images")
        self.out_shape = (image_shape[0], *self.crop_size)
        self.crops = self.crop_size != (h, w)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crops:
            x = random_crops(x, self.crop_size, generator)
        if self.flip:
            x = random_flips(x, generator)
        return x

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return center_crop(x, self.crop_size) if self.crops else x


class Pipeline:
    """uint8 batch -> float model input: augmentation (train only), normalisation, memory format."""

    def __init__(self, augmentation: Augmentation, normalizer: Normalizer, channels_last: bool = False):
        self.augmentation = augmentation
        self.normalizer = normalizer
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def views(self, images: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented (or centre) views in 0..255, before normalisation: what the model sees, for display."""
        x = images.float()
        return self.augmentation.train(x, generator) if train else self.augmentation.eval(x)

    def __call__(self, images: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.normalizer(self.views(images, train, generator))
        return x.contiguous(memory_format=self.memory_format)
