"""Olivetti faces: the 20 x 20 grid GIF (400 faces, 57 x 47, 40 people) embedded in the package."""

from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnexp.data.registry import register_dataset
from cnnexp.data.image_data import ImageData, Split
from cnnexp.data.images import image_size
from cnnexp.utils.errors import UserError

FACE_H, FACE_W, GRID = 57, 47, 20
FACES_PER_PERSON = 10
PEOPLE = 40


def person_names(people: int = PEOPLE) -> list[str]:
    return [f"person_{i:02d}" for i in range(people)]


def embedded_gif() -> Path:
    return Path(str(resources.files("cnnexp.data") / "assets" / "olivettifaces.gif"))


def read_faces(path: Path) -> np.ndarray:
    """Cut the GIF into 400 uint8 faces (row-major: faces 0-9 are person 0, ...)."""
    try:
        grid = np.asarray(Image.open(path).convert("L"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read Olivetti GIF {path}: {exc}; point dataset.root at olivettifaces.gif")
    height, width = FACE_H * GRID, FACE_W * GRID
    if grid.shape[0] < height or grid.shape[1] < width:
        raise UserError(f"{path} is {grid.shape[1]}x{grid.shape[0]}, smaller than the {width}x{height} Olivetti grid")
    faces = grid[:height, :width].reshape(GRID, FACE_H, GRID, FACE_W).transpose(0, 2, 1, 3)
    return faces.reshape(GRID * GRID, FACE_H, FACE_W).copy()


def split_per_person(faces: np.ndarray, per_person: list[int]) -> dict[str, Split]:
    """The tutorial's split: per person, the first n_train faces train, the next n_val validate, the rest test."""
    bounds = np.cumsum([0, *per_person])
    people = faces.reshape(-1, FACES_PER_PERSON, 1, *faces.shape[1:])
    splits = {}
    for name, lo, hi in zip(("train", "val", "test"), bounds[:-1], bounds[1:]):
        images = torch.from_numpy(people[:, lo:hi].reshape(-1, 1, *faces.shape[1:]).copy())
        labels = torch.arange(people.shape[0]).repeat_interleave(int(hi - lo))
        splits[name] = Split(images, labels)
    return splits


def resized(faces: np.ndarray, size) -> np.ndarray:
    """All faces stretched to `size` (int or [H, W]; bilinear, antialiased), for models that need
    larger inputs (Levi-Hassner's 227x227); None keeps 57x47."""
    if size is None:
        return faces
    height, width = image_size(size)
    x = torch.from_numpy(faces).float()[:, None]
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()


@register_dataset
def olivetti(cfg, seed: int = 0) -> ImageData:
    path = Path(cfg.root) if cfg.root else embedded_gif()
    if not path.exists():
        raise UserError(f"Olivetti GIF not found at {path}; remove dataset.root to use the embedded copy")
    faces = resized(read_faces(path), cfg.size)
    splits = split_per_person(faces, list(cfg.per_person))
    return ImageData(splits, person_names(len(faces) // FACES_PER_PERSON), meta={"source": str(path)})
