"""Image files -> uint8 H x W x C arrays of one channel count and size; folders of class folders.

Pillow decodes (JPEG, PNG, PGM/PPM, BMP, GIF, TIFF, WebP); OpenCV is the fallback for formats
Pillow cannot identify. A file Pillow recognises but cannot decode (a truncated JPEG) is not handed
to OpenCV, which would return a half-grey picture instead of failing.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnexp.utils.errors import UserError

RESIZE_MODES = ("simple", "aspect")
SPLIT_DIRS = {"train": ("train",), "val": ("validation", "val", "valid"), "test": ("test",)}


class UnreadableImage(Exception):
    """A file that is not an image, or an image that cannot be decoded; `reason` says why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def image_size(size) -> tuple[int, int]:
    """`dataset.size` as (H, W): an int for squares or [H, W]."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise UserError(f"size={size!r} must be a positive int or [height, width], e.g. 64 or [70, 50]")
    return pair


def check_options(channels: int, resize: str) -> None:
    if channels not in (1, 3):
        raise UserError(f"channels={channels} must be 1 (grey) or 3 (RGB)")
    if resize not in RESIZE_MODES:
        raise UserError(f"resize={resize} is not one of: {', '.join(RESIZE_MODES)}")


def _open_pillow(source, path, mode: str, size: tuple[int, int] | None) -> Image.Image | None:
    """The decoded image of `source` (a file or a file object; `path` names it in messages), or None
    when Pillow does not know the format."""
    try:
        image = Image.open(source)
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(path, str(exc)) from exc
    try:
        if size is not None:
            image.draft(mode, (size[1], size[0]))  # JPEG: decode at a reduced scale still >= the target size
        return image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(path, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) from exc


def _open_opencv(path: Path, mode: str) -> Image.Image:
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if mode == "L" else cv2.IMREAD_COLOR
    return _from_opencv(cv2.imread(str(path), flag), path, mode)


def _from_opencv(array: np.ndarray | None, path, mode: str) -> Image.Image:
    if array is None:
        raise UnreadableImage(path, "not an image Pillow or OpenCV can read")
    return Image.fromarray(array if mode == "L" else array[:, :, ::-1].copy())


def open_image(path, channels: int, size: tuple[int, int] | None = None) -> Image.Image:
    """One file decoded to grey (1 channel) or RGB (3); `size` (H, W) lets JPEG decode at a reduced
    scale that still covers it."""
    path = Path(path)
    mode = "L" if channels == 1 else "RGB"
    try:
        image = _open_pillow(path, path, mode, size)
    except OSError as exc:  # missing, a folder, no permission
        raise UnreadableImage(path, exc.strerror or str(exc)) from exc
    return image if image is not None else _open_opencv(path, mode)


def image_from_bytes(data: bytes, name: str, channels: int) -> Image.Image:
    """An image held in memory (an upload), decoded as `open_image` decodes a file; `name` only
    appears in messages, it is never opened."""
    import cv2

    mode = "L" if channels == 1 else "RGB"
    image = _open_pillow(io.BytesIO(data), name, mode, None)
    if image is not None:
        return image
    flag = cv2.IMREAD_GRAYSCALE if mode == "L" else cv2.IMREAD_COLOR
    return _from_opencv(cv2.imdecode(np.frombuffer(data, np.uint8), flag) if data else None, name, mode)


def fit_image(image: Image.Image, size: tuple[int, int], resize: str = "simple") -> np.ndarray:
    """uint8 H x W x C of size (H, W): `simple` stretches, `aspect` scales the short side to cover it
    and centre-crops (the tutorial's AspectAwarePreprocessor)."""
    target = (size[1], size[0])
    if resize == "aspect":
        image = ImageOps.fit(image, target, Image.Resampling.BILINEAR)
    elif image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def read_image(path, channels: int, size: tuple[int, int], resize: str = "simple") -> np.ndarray:
    """One file as uint8 H x W x C of the given channels and size."""
    return fit_image(open_image(path, channels, size), size, resize)


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
    """Fill the splits the folder lacks (val, test) from its training files by `ratios` [train, val, test]."""
    ratios = list(ratios)
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise UserError(f"split={ratios} must be three fractions [train, val, test], e.g. [0.8, 0.1, 0.1]")
    missing = [s for s in ("val", "test") if s not in samples]
    if not missing:
        return samples
    wanted = [ratios[0]] + [ratios[("train", "val", "test").index(s)] for s in missing]
    parts = stratified_split(samples["train"], wanted, seed)
    return {**samples, "train": parts[0], **dict(zip(missing, parts[1:]))}
