"""A user's image files -> the uint8 C x H x W tensors a restored model takes: which files `image=`
names, decoding to grey or RGB, an optional face crop (OpenCV's Haar cascade), and resizing to the
size the run trained on (its evaluation then centre-crops as usual)."""

import glob
import os
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from cnnexp.data import images
from cnnexp.data.faces import largest_face
from cnnexp.data.images import IMAGE_SUFFIXES, fit_image, open_image
from cnnexp.utils.errors import UserError


class UnreadableImage(UserError):
    """A file that cannot be decoded as an image; `status` is what `serve` answers for such an upload:
    413 above the pixel limit, 415 a format that is not opened, 400 anything else."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def refused(exc: images.UnreadableImage, name, verb: str) -> UnreadableImage:
    """The one-line message (and serve's status) for an image the decoder refused."""
    if isinstance(exc, images.TooManyPixels):
        return UnreadableImage(f"{name} is too large to decode ({exc.reason}); {verb} a smaller image, or raise "
                               f"max_pixels", 413)
    status = 415 if isinstance(exc, images.FormatNotOpened) else 400
    return UnreadableImage(f"cannot decode {name} as an image ({exc.reason}); {verb} a JPEG, PNG, GIF, BMP, TIFF, "
                           f"WebP or PGM/PPM file", status)


def image_files(spec) -> list[Path]:
    """A file, a folder (searched recursively for image files) or a glob, relative to the working directory;
    or a list of them (`image=[a.jpg,b.jpg]`), in its order, a file named twice read once."""
    if isinstance(spec, (list, tuple)) or OmegaConf.is_list(spec):
        return list(dict.fromkeys(path for item in spec for path in image_files(item)))
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


def decode(path: Path, channels: int, max_pixels: int) -> Image.Image:
    """The whole image in the run's colour mode (grey for 1 channel, RGB for 3)."""
    try:
        return open_image(path, channels, None, max_pixels)
    except images.UnreadableImage as exc:
        raise refused(exc, path, "give") from None


def decode_upload(data: bytes, name: str, channels: int, max_pixels: int) -> Image.Image:
    """Bytes a client sent (a web upload), decoded like a file; `name` is only used in the message."""
    try:
        return images.image_from_bytes(data, name, channels, max_pixels)
    except images.UnreadableImage as exc:
        raise refused(exc, name, "send") from None


def fit(image: Image.Image, size: tuple[int, int], resize: str) -> torch.Tensor:
    """uint8 C x H x W of size (H, W): `aspect` scales to cover and centre-crops, `simple` stretches."""
    return torch.from_numpy(fit_image(image, size, resize)).permute(2, 0, 1).contiguous()


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


def load(path: Path, shape: tuple[int, int, int], resize: str, detect_face: bool, margin: float, max_pixels: int):
    """(uint8 C x H x W tensor, face box or None); the tensor is None when a face was asked for and not found."""
    return prepare(decode(path, shape[0], max_pixels), shape, resize, detect_face, margin)


def prepare(image: Image.Image, shape: tuple[int, int, int], resize: str, detect_face: bool, margin: float):
    """A decoded image -> (uint8 C x H x W tensor or None when no face was found, face box or None)."""
    box = find_face(image) if detect_face else None
    if detect_face and box is None:
        return None, None
    return fit_face(image, box, shape, resize, margin), box


def find_face(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest face in a decoded image (found in its grey version), or None."""
    return largest_face(np.asarray(image.convert("L")))


def fit_face(image: Image.Image, box, shape: tuple[int, int, int], resize: str, margin: float) -> torch.Tensor:
    """A decoded image in a run's channels (grey or RGB, as decoding to them directly gives), cropped to
    the face window around `box` (None: the whole image) and brought to the run's size."""
    image = images.in_mode(image, "L" if shape[0] == 1 else "RGB")
    if box is not None:
        image = image.crop(face_window(box, image.size, shape[1:], margin))
    return fit(image, shape[1:], resize)
