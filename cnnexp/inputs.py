"""A user's image files -> the uint8 C x H x W tensors a restored model takes: which files `image=`
names, decoding to grey or RGB, an optional face crop (OpenCV's Haar cascade), and resizing to the
size the run trained on (its evaluation then centre-crops as usual)."""

import glob
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from cnnexp.errors import UserError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
CASCADE = "haarcascade_frontalface_default.xml"


class UnreadableImage(UserError):
    """A file that cannot be decoded as an image."""


def image_files(spec: str) -> list[Path]:
    """A file, a folder (searched recursively for image files) or a glob, relative to the working directory."""
    text = os.path.expanduser(str(spec))
    if any(char in text for char in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"image={spec} matches no files; check the pattern (quote it in the shell)")
        return files
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise UserError(f"{path} holds no image files ({' '.join(IMAGE_SUFFIXES)}); give another folder or a file")
        return files
    if path.is_file():
        return [path]
    raise UserError(f"image={spec} does not exist; give an image file, a folder, a glob ('faces/*.png') or olivetti")


def decode(path: Path, channels: int) -> Image.Image:
    """The whole image in the run's colour mode (grey for 1 channel, RGB for 3)."""
    try:
        with Image.open(path) as image:
            return image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UnreadableImage(f"cannot decode {path} as an image ({reason}); give a PNG, JPEG, GIF, BMP or TIFF file")


def fit(image: Image.Image, size: tuple[int, int], resize: str = "aspect") -> torch.Tensor:
    """Resize to size (H, W): `aspect` scales to cover and centre-crops, `simple` stretches."""
    target = (size[1], size[0])
    if image.size != target:
        image = (ImageOps.fit(image, target, Image.Resampling.BILINEAR) if resize == "aspect"
                 else image.resize(target, Image.Resampling.BILINEAR))
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


@lru_cache(maxsize=1)
def face_cascade():
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise UserError("this OpenCV has no CascadeClassifier (OpenCV 5); install opencv-python-headless<5")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise UserError(f"OpenCV could not load {CASCADE}; reinstall opencv-python-headless<5")
    return cascade


def largest_face(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest frontal face the Haar cascade finds, or None."""
    grey = np.asarray(image.convert("L"))
    faces = face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces.tolist(), key=lambda box: box[2] * box[3])
    return x, y, w, h


def face_window(box, image_size: tuple[int, int], size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """The detection box grown by `margin` on each side and then to the training images' aspect ratio
    (the cascade's square box is tighter than a portrait face crop), shifted to stay inside the image.
    Returns PIL's (left, top, right, bottom)."""
    x, y, w, h = box
    width, height = w * (1 + 2 * margin), h * (1 + 2 * margin)
    aspect = size[0] / size[1]
    width, height = max(width, height / aspect), max(height, width * aspect)
    img_w, img_h = image_size
    width, height = min(width, img_w), min(height, img_h)
    left = min(max(x + w / 2 - width / 2, 0), img_w - width)
    top = min(max(y + h / 2 - height / 2, 0), img_h - height)
    return round(left), round(top), round(left + width), round(top + height)


def load(path: Path, shape: tuple[int, int, int], resize: str, detect_face: bool, margin: float):
    """(uint8 C x H x W tensor, face box or None); the tensor is None when a face was asked for and not found."""
    image = decode(path, shape[0])
    if not detect_face:
        return fit(image, shape[1:], resize), None
    box = largest_face(image)
    if box is None:
        return None, None
    return fit(image.crop(face_window(box, image.size, shape[1:], margin)), shape[1:], resize), box
