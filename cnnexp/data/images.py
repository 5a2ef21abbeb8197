"""Image files -> uint8 H x W x C arrays of one channel count and size; folders of class folders.

One decoding path for every command that reads an image (training folders, eval, predict, serve,
features, viz, the data tools), with the same rules everywhere:

- Only the formats in OPENED are opened (Pillow): JPEG (and MPO, the JPEG some phones write), PNG
  (APNG), GIF, BMP, TIFF, WebP, and the netpbm family PBM/PGM/PPM/PFM; PAM and colour PFM, the netpbm
  members Pillow lacks, go to OpenCV. Any other file, an image of another format included, is
  unreadable with a reason that names what it is.
- Width x height, read from the header, is checked against a pixel limit (`max_pixels`) before a
  pixel is decoded: a small file that would decode to gigabytes is refused for the price of its header.
- An animation (GIF, WebP, APNG) gives its first frame; EXIF orientation (JPEG, PNG, WebP, TIFF) is
  applied.
- 16-bit grey and colour keep their top 8 bits (65535 -> 255: scaled, never clipped); 32-bit integer
  and floating-point images are stretched from their smallest value (0) to their largest (255).
- CMYK and YCCK JPEGs become RGB, palettes their colours, and transparency is composited on a white
  BACKGROUND, so what was under a transparent pixel never shows through.
- Then grey (1 channel) or RGB (3), as the model takes.

A file Pillow recognises but cannot decode (a truncated JPEG) is unreadable: it is never handed on to
OpenCV, which would return a half-grey picture instead of failing.
"""

import io
import re
import struct
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from cnnexp.utils.errors import UserError

SPLIT_DIRS = {"train": ("train",), "val": ("validation", "val", "valid"), "test": ("test",)}
OPENED = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # Pillow's names; JPEG includes MPO, PPM PBM/PGM/PFM
OPENED_TEXT = "JPEG, PNG, GIF, BMP, TIFF, WebP, PBM/PGM/PPM/PAM/PFM"
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pam", ".pbm", ".pfm", ".pgm", ".png", ".pnm", ".ppm", ".tif",
                  ".tiff", ".webp")  # what a folder search (predict, viz) takes for an image
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited on (white, as a web page shows them)
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
HEAD_BYTES = 512  # read to name a refused file's format, or to find a PAM/PFM header
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)

# cnnexp checks width x height against max_pixels itself, from the header and before decoding; Pillow's
# own check would print a raw warning above 89 megapixels and refuse above 179 whatever max_pixels says.
Image.MAX_IMAGE_PIXELS = None


class UnreadableImage(Exception):
    """A file that is not an image, or an image that cannot be decoded; `reason` says why."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class TooManyPixels(UnreadableImage):
    """An image whose header gives more than `max_pixels` pixels (refused before decoding)."""


class FormatNotOpened(UnreadableImage):
    """An image in a format cnnexp does not open (not in OPENED)."""


def image_size(size) -> tuple[int, int]:
    """A `size` setting (an int for squares or [H, W], checked by its schema) as (H, W)."""
    return (size, size) if isinstance(size, int) else tuple(size)


# ---- decoding -------------------------------------------------------------------------------------
def decode_image(source: Path | bytes, name, channels: int, size: tuple[int, int] | None,
                 max_pixels: int) -> Image.Image:
    """A file (a Path) or bytes held in memory (an upload; `name` only appears in messages, it is never
    opened) decoded to grey (1 channel) or RGB (3) by the rules above. `size` (H, W) lets a JPEG
    decode at a reduced scale that still covers it. Raises UnreadableImage (TooManyPixels,
    FormatNotOpened) with the reason."""
    mode = "L" if channels == 1 else "RGB"
    try:
        stream = open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)
    except OSError as exc:  # missing, a folder, no permission
        raise UnreadableImage(name, exc.strerror or str(exc)) from exc
    with stream:
        try:
            image = Image.open(stream, formats=OPENED)
        except UnidentifiedImageError:
            stream.seek(0)
            return decode_netpbm(stream.read(), name, mode, max_pixels)
        except DECODE_ERRORS as exc:
            raise UnreadableImage(name, first_line(exc)) from exc
        check_pixels(name, image.size, max_pixels)
        try:
            if size is not None and image.format in ("JPEG", "MPO"):
                reduce_jpeg(image, mode, size)
            image.load()  # the first frame of an animation
            image = upright(image)
            return in_mode(opaque(eight_bit(image)), mode)
        except DECODE_ERRORS as exc:
            raise UnreadableImage(name, first_line(exc)) from exc


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def check_pixels(name, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise TooManyPixels(name, f"its header says {width} x {height} = {width * height:,} pixels, over the "
                                  f"max_pixels limit of {max_pixels:,}; it was not decoded")


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent or unreadable: a damaged EXIF block is not a damaged picture)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, ValueError, SyntaxError, TypeError, struct.error):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def reduce_jpeg(image: Image.Image, mode: str, size: tuple[int, int]) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers `size` (H, W) once the
    EXIF rotation (orientations 5-8 swap the sides) is applied."""
    height, width = size
    image.draft(mode, (height, width) if orientation(image) >= 5 else (width, height))


def upright(image: Image.Image) -> Image.Image:
    return ImageOps.exif_transpose(image) if orientation(image) != 1 else image


def eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grey (I;16*) and 32-bit (I, F) images as 8-bit grey; other modes as they are (Pillow
    already keeps the top byte of 16-bit colour)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return Image.fromarray(eight_bit_array(np.asarray(image)))
    return image


def eight_bit_array(array: np.ndarray) -> np.ndarray:
    """uint8 of the same shape: 16-bit values' top byte; 32-bit integers above 16 bits and floats
    stretched from their smallest finite value to their largest (a flat image becomes 0)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu" and array.min(initial=0) >= 0 and array.max(initial=0) <= 65535:
        return (array.astype(np.uint16) >> 8).astype(np.uint8)
    values = array.astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    scaled = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    return np.rint(scaled).astype(np.uint8)


def opaque(image: Image.Image) -> Image.Image:
    """An image with transparency (an alpha channel, or a transparent palette index or colour)
    composited on BACKGROUND, as RGB; others as they are."""
    if image.mode not in ALPHA_MODES and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """Grey or RGB: CMYK, YCbCr, palettes and 1-bit go through RGB; grey to RGB repeats the channel,
    RGB to grey is Pillow's ITU-R 601-2 luma."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return image if image.mode == mode else image.convert(mode)


# ---- the OpenCV fallback: the netpbm members Pillow does not read ---------------------------------
def netpbm_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PAM (P7) or colour PFM (PF) file; None for anything else."""
    if head.startswith(b"P7"):
        fields = dict(re.findall(rb"(?m)^(WIDTH|HEIGHT)[ \t]+(\d+)", head))
        if len(fields) == 2:
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    elif head.startswith(b"PF"):
        words = head.split(maxsplit=3)
        if len(words) >= 3 and words[1].isdigit() and words[2].isdigit():
            return int(words[1]), int(words[2])
    return None


def decode_netpbm(data: bytes, name, mode: str, max_pixels: int) -> Image.Image:
    """A PAM or colour PFM file through OpenCV, its header checked against the pixel limit first;
    any other file Pillow did not open is refused with what it is."""
    size = netpbm_size(data[:HEAD_BYTES])
    if size is None:
        raise refusal(data, name)
    check_pixels(name, size, max_pixels)
    import cv2

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise UnreadableImage(name, "a PAM/PFM file OpenCV cannot decode (damaged or truncated)")
    array = eight_bit_array(array)
    if array.ndim == 3 and array.shape[2] >= 3:  # OpenCV's BGR(A) -> RGB(A)
        array = array[:, :, [2, 1, 0, *range(3, array.shape[2])]]
    return in_mode(opaque(Image.fromarray(np.ascontiguousarray(array.squeeze()))), mode)


def refusal(data: bytes, name) -> UnreadableImage:
    """Why a file Pillow did not open is not read: empty, a damaged header of an opened format, an
    image format cnnexp does not open (named from Pillow's formats by their first bytes only, no
    other plugin parses it), or not an image at all."""
    if not data:
        return UnreadableImage(name, "the file is empty")
    Image.init()
    known = [fmt for fmt, (_, accept) in Image.OPEN.items() if accept and accept(data[:16])]
    if known and known[0] in OPENED:
        return UnreadableImage(name, f"a damaged {known[0]} file: its header cannot be read")
    if known:
        return FormatNotOpened(name, f"{known[0]} format by its first bytes, which cnnexp does not open (it opens "
                                    f"{OPENED_TEXT})")
    return UnreadableImage(name, "not an image file")


def open_image(path, channels: int, size: tuple[int, int] | None, max_pixels: int) -> Image.Image:
    """One file decoded to grey (1 channel) or RGB (3) by `decode_image`."""
    return decode_image(Path(path), Path(path), channels, size, max_pixels)


def image_from_bytes(data: bytes, name: str, channels: int, max_pixels: int) -> Image.Image:
    """An image held in memory (an upload), decoded as `open_image` decodes a file."""
    return decode_image(bytes(data), name, channels, None, max_pixels)


def fit_image(image: Image.Image, size: tuple[int, int], resize: str) -> np.ndarray:
    """uint8 H x W x C of size (H, W): `simple` stretches, `aspect` scales the short side to cover it
    and centre-crops (the tutorial's AspectAwarePreprocessor)."""
    target = (size[1], size[0])
    if resize == "aspect":
        image = ImageOps.fit(image, target, Image.Resampling.BILINEAR)
    elif image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def read_image(path, channels: int, size: tuple[int, int], resize: str, max_pixels: int) -> np.ndarray:
    """One file as uint8 H x W x C of the given channels and size."""
    return fit_image(open_image(path, channels, size, max_pixels), size, resize)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def class_folders(root: Path) -> dict[str, list[Path]]:
    """{class name: sorted files} for the sub-folders of root, in sorted order."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    return {c.name: sorted(f for f in c.iterdir() if f.is_file() and _visible(f)) for c in classes}


def find_split_dirs(root: Path) -> dict[str, Path]:
    """{split: folder} for an already split root (train/, validation/ or val/, test/); {} otherwise."""
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found if "train" in found else {}


def scan_folder(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and {split: [(file, label)]} for the splits the folder itself has (`train` at least)."""
    if not root.is_dir():
        raise UserError(f"image folder {root} not found; set it to a folder of class folders (or of train/ val/ test/)")
    split_dirs = find_split_dirs(root) or {"train": root}
    per_split = {split: class_folders(folder) for split, folder in split_dirs.items()}
    names = sorted(per_split["train"])
    if not names:
        raise UserError(f"{split_dirs['train']} has no class folders; put each class's images in a folder of its own")
    for split, classes in per_split.items():
        extra = sorted(set(classes) - set(names))
        if extra:
            raise UserError(f"{split_dirs[split]} has classes not in the training folder: {', '.join(extra)}")
    samples = {split: [(f, names.index(c)) for c, files in classes.items() for f in files]
               for split, classes in per_split.items()}
    return names, samples


def stratified_split(samples: list, ratios: list[float], seed: int) -> list[list]:
    """Split (file, label) pairs by ratios, class by class, deterministically from seed."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in ratios]
    total = sum(ratios)
    for label in sorted({lab for _, lab in samples}):
        members = [s for s in samples if s[1] == label]
        members = [members[i] for i in rng.permutation(len(members))]
        counts = [round(len(members) * r / total) for r in ratios[1:]]
        bounds = np.cumsum([len(members) - sum(counts), *counts])
        for part, lo, hi in zip(parts, [0, *bounds[:-1]], bounds):
            part.extend(members[lo:hi])
    return [sorted(p, key=lambda s: (s[1], str(s[0]))) for p in parts]


def assign_splits(samples: dict[str, list], ratios, seed: int) -> dict[str, list]:
    """Fill the splits the folder lacks (val, test) from its training files by `ratios` [train, val, test]
    (three fractions, checked by the schema)."""
    ratios = list(ratios)
    missing = [s for s in ("val", "test") if s not in samples]
    if not missing:
        return samples
    wanted = [ratios[0]] + [ratios[("train", "val", "test").index(s)] for s in missing]
    parts = stratified_split(samples["train"], wanted, seed)
    return {**samples, "train": parts[0], **dict(zip(missing, parts[1:]))}
