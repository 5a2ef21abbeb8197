"""Turning uint8 batches into model inputs on the device: augmentation, then normalisation.

Everything works on whole batches with per-sample random parameters drawn from one
`torch.Generator`, so the training loop has no per-image Python and runs where the data lives.
"""

import math

import torch
import torch.nn.functional as F

from cnnexp.utils.errors import UserError

NORMALIZE_MODES = ("none", "scale", "mean", "standardize")


class Normalizer:
    """Per-channel normalisation with statistics taken from the training split only."""

    def __init__(self, mode: str, mean: list[float], std: list[float]):
        if mode not in NORMALIZE_MODES:
            raise UserError(f"dataset.normalize={mode} is not one of: {', '.join(NORMALIZE_MODES)}")
        self.mode, self.mean, self.std = mode, list(mean), list(std)
        self._tensors: dict = {}

    @classmethod
    def fit(cls, mode: str, train_images, stats: tuple[list, list] | None = None) -> "Normalizer":
        """Channel mean and std (in 0..255 units) of the uint8 N x C x H x W training images, read in
        chunks of about 4M values (so streamed images are never all in memory); `stats` given
        (e.g. the mean stored in an HDF5 file) skips the pass."""
        channels = train_images.shape[1]
        if stats is not None:
            return cls(mode, *stats)
        if mode in ("none", "scale") and not isinstance(train_images, torch.Tensor):
            return cls(mode, [0.0] * channels, [1.0] * channels)  # streamed: no pass for unused statistics
        total = torch.zeros(channels, dtype=torch.float64)
        total_sq = torch.zeros(channels, dtype=torch.float64)
        for chunk in train_images.split(max(1, 2**22 // math.prod(train_images.shape[1:]))):
            values = chunk.to(torch.float64).transpose(0, 1).reshape(channels, -1)
            total += values.sum(1).cpu()
            total_sq += (values**2).sum(1).cpu()
        count = max(train_images.numel() // channels, 1)
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
        mean, std = self._stats(x.device, x.dtype)
        if self.mode == "mean":  # the tutorial's MeanPreprocessor: 0..255 units, centred
            return x - mean
        return (x - mean) / std

    def _stats(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std as 1 x C x 1 x 1 tensors, made once per device and dtype (not every batch)."""
        key = (str(device), dtype)
        if key not in self._tensors:
            self._tensors[key] = tuple(torch.tensor(v, device=device, dtype=dtype).view(1, -1, 1, 1)
                                       for v in (self.mean, self.std))
        return self._tensors[key]


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


FILL_MODES = {"nearest": "border", "constant": "zeros", "reflect": "reflection"}  # Keras fill_mode -> grid_sample


def _uniform(u: torch.Tensor, bound: float) -> torch.Tensor:
    """u in [0, 1) -> uniform in [-bound, bound)."""
    return (2 * u - 1) * bound


class Augmentation:
    """Training-time augmentation of float batches; evaluation sees the deterministic centre view.

    Knobs (the `augmentation` config group, each with a default in every choice so any combination
    works by override): `crop_size` [H, W] for random patches (centre crop at evaluation, so models
    size themselves from the crop), `flip` for random horizontal mirrors, and Keras
    ImageDataGenerator's affine ranges: `rotation` (degrees), `zoom` (per axis, 1 +- zoom),
    `width_shift`/`height_shift` (fractions of the patch), `shear` (degrees, as Keras) and `fill`
    (nearest | constant | reflect) for pixels from outside the image.

    With any affine range set, patch, flip and warp are one matrix per sample and one `grid_sample`
    over the batch: the patch is taken first and warped about its own centre, as the tutorial
    augments 227 patches, but fill pixels come from the image around the patch where there are any.
    """

    def __init__(self, cfg, image_shape: tuple[int, int, int]):
        """`cfg`: every augmentation key, typed and range-checked by the schema (a composed `augmentation`
        node, a run's saved one brought up to date by `schemas.upgrade`, or `schemas.AugmentationSchema`)."""
        self.name = cfg.name
        self.flip = cfg.flip
        _, h, w = image_shape
        self.image_size = (h, w)
        self.crop_size = (h, w) if cfg.crop_size is None else tuple(cfg.crop_size)
        if not (0 < self.crop_size[0] <= h and 0 < self.crop_size[1] <= w):
            raise UserError(f"augmentation.crop_size={list(self.crop_size)} must fit inside the {h}x{w} images")
        self.out_shape = (image_shape[0], *self.crop_size)
        self.crops = self.crop_size != (h, w)
        self.ranges = {key: getattr(cfg, key) for key in ("rotation", "zoom", "width_shift", "height_shift", "shear")}
        self.fill = cfg.fill
        self.padding = FILL_MODES[cfg.fill]
        self.warps = any(self.ranges.values())

    def describe(self) -> str:
        """What training actually does to an image, whatever the choice is called: an experiment's
        `augmentation:` block still applies on top of `augmentation=none`."""
        parts = [f"random {self.crop_size[0]}x{self.crop_size[1]} patch"] if self.crops else []
        parts += ["mirror"] if self.flip else []
        units = {"rotation": "°", "shear": "°"}
        parts += [f"{key.replace('_', ' ')} {value:g}{units.get(key, '')}" for key, value in self.ranges.items() if value]
        parts += [f"fill {self.fill}"] if self.warps else []
        return ", ".join(parts) or "none (whole image)"

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.warps:
            return self.warp(x, generator)
        if self.crops:
            x = random_crops(x, self.crop_size, generator)
        if self.flip:
            x = random_flips(x, generator)
        return x

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return center_crop(x, self.crop_size) if self.crops else x

    def warp(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        theta = self.matrices(n, generator).to(x.device, x.dtype)
        grid = F.affine_grid(theta, [n, c, *self.crop_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)

    def matrices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n x 2 x 3 `affine_grid` matrices: output (patch) coordinates -> input coordinates, both
        normalised to [-1, 1]. In pixels, a point p of the patch, relative to its centre, samples
        the image at  patch centre + A F p + t,  A = rotation . shear . zoom, F the optional mirror,
        t = rotation . shift (Keras composes the same way)."""
        (h, w), (ch, cw), r = self.image_size, self.crop_size, self.ranges
        # drawn and composed on the generator's device: no copy to the host, so a GPU step never waits here
        u = torch.rand(n, 9, generator=generator, device=generator.device).double()
        rotation = rotation_matrices(torch.deg2rad(_uniform(u[:, 0], r["rotation"])))
        a = rotation @ shear_zoom_matrices(torch.deg2rad(_uniform(u[:, 1], r["shear"])),
                                           1 + _uniform(u[:, 2], r["zoom"]), 1 + _uniform(u[:, 3], r["zoom"]))
        shift = torch.stack([_uniform(u[:, 4], r["width_shift"]) * cw, _uniform(u[:, 5], r["height_shift"]) * ch], 1)
        mirror = torch.where((u[:, 6] < 0.5) & self.flip, -1.0, 1.0)
        left, top = (u[:, 7] * (w - cw + 1)).floor(), (u[:, 8] * (h - ch + 1)).floor()
        to_unit = torch.tensor([2 / w, 2 / h], dtype=torch.float64, device=u.device)  # pixels -> normalised input units
        from_unit = torch.stack([mirror * cw / 2, torch.full_like(mirror, ch / 2)], 1)  # normalised patch -> pixels
        linear = to_unit[None, :, None] * a * from_unit[:, None, :]
        centre = torch.stack([left + cw / 2 - w / 2, top + ch / 2 - h / 2], 1)
        offset = (centre + (rotation @ shift[:, :, None])[:, :, 0]) * to_unit
        return torch.cat([linear, offset[:, :, None]], 2).float()


def rotation_matrices(angle: torch.Tensor) -> torch.Tensor:
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)


def shear_zoom_matrices(shear: torch.Tensor, zoom_x: torch.Tensor, zoom_y: torch.Tensor) -> torch.Tensor:
    """Keras' shear matrix [[1, -sin s], [0, cos s]] times diag(zoom_x, zoom_y)."""
    out = torch.zeros(len(shear), 2, 2, dtype=torch.float64, device=shear.device)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 1] = zoom_x, -shear.sin() * zoom_y, shear.cos() * zoom_y
    return out


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


def ten_crops(x: torch.Tensor, size: tuple[int, int], mirror: bool = True) -> list[torch.Tensor]:
    """The four corner windows and the centre window of `size`, then the mirror of each (10 views;
    the five windows alone without `mirror`). The centre window is the one plain evaluation sees."""
    h, w = x.shape[-2:]
    ch, cw = size
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
    crops = [x[..., top : top + ch, left : left + cw] for top, left in corners]
    return crops + [crop.flip(-1) for crop in crops] if mirror else crops
