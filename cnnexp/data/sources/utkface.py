"""`dataset=utkface`: a flat folder of faces whose labels are in the file names, by a pattern with
named groups (UTKFace's `<age>_<gender>_<race>_<date&time>.jpg.chip.jpg` by default). Every named group
is a field of the image; `dataset.target` picks the one the network learns (age into the age groups,
gender as M/F, race by name), the others stay for `cnnexp eval by=<field>`. The folder has no split: it
is split here, seeded and stratified (cnnexp.data.labels)."""

import re

from cnnexp.data.registry import register_dataset
from cnnexp.data.image_data import ImageData
from cnnexp.data.images import IMAGE_SUFFIXES
from cnnexp.data.labels import labelled_data
from cnnexp.data.sources.folder import user_path
from cnnexp.utils.errors import UserError


def name_pattern(text: str) -> re.Pattern:
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise UserError(f"dataset.pattern={text!r} is not a regular expression ({exc})") from None
    if not pattern.groupindex:
        raise UserError(f"dataset.pattern={text!r} has no named group; name each label, e.g. "
                        r"'^(?P<age>\d+)_(?P<gender>\d)_'")
    return pattern


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


@register_dataset
def utkface(cfg, seed: int = 0) -> ImageData:
    root = user_path(cfg.root, "dataset.root")
    if not root.is_dir():
        raise UserError(f"dataset.root={cfg.root} is not a folder; give the folder that holds the face files")
    pattern = name_pattern(cfg.pattern)
    rows, unmatched = [], 0
    for path in sorted(p for p in root.iterdir() if p.is_file() and is_image_name(p.name)):
        match = pattern.match(path.name)
        if match is None:
            unmatched += 1
            continue
        rows.append((path, match.groupdict(), path.name))
    return labelled_data(cfg, rows, root, seed, {"whose names do not match dataset.pattern": unmatched})
