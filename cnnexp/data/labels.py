"""Labels that face datasets keep beside their images (in file names, in tables): each a *field* of
an image (age, gender, race, any table column), one of which is the *target* the network learns.

A field's raw text becomes a label here, the same way for every source: `age` goes into the age groups
of Levi and Hassner (a number, or an Adience group string such as `(25, 32)`), `gender` into `M`/`F`,
UTKFace's race numbers into their names; any other field is a category as it is, or a number put into
named bins (`dataset.bins`). A raw value that carries no label (Adience's `None` age, `u` gender, an
empty cell) is None: the image is counted and skipped by its source.
"""

import math
import re
from dataclasses import dataclass

import numpy as np

from cnnexp.data.images import stratified_split
from cnnexp.utils.errors import UserError


@dataclass(frozen=True)
class Bin:
    label: str
    low: float
    high: float  # inclusive; math.inf for an open last bin

    def distance(self, value: float) -> float:
        return max(self.low - value, 0.0, value - self.high)


# Levi & Hassner's 8 age groups (the Adience labels, the strings the tutorial's service answered). An age
# between two groups goes to the nearer one, a tie to the younger (0-3, 4-7, 8-13, 14-22, 23-35, 36-45,
# 46-56, 57+); the last group takes every age above 60 (UTKFace has ages up to 116).
AGE_GROUPS = (Bin("(0, 2)", 0, 2), Bin("(4, 6)", 4, 6), Bin("(8, 12)", 8, 12), Bin("(15, 20)", 15, 20),
              Bin("(25, 32)", 25, 32), Bin("(38, 43)", 38, 43), Bin("(48, 53)", 48, 53),
              Bin("(60, 100)", 60, math.inf))
GENDERS = {"0": "M", "1": "F", "m": "M", "f": "F", "male": "M", "female": "F"}  # UTKFace: 0 male, 1 female
GENDER_LABELS = ("M", "F")
RACES = ("White", "Black", "Asian", "Indian", "Others")  # UTKFace's race field, 0-4
STRATA_FIELDS = {"age", "gender", "race"}  # what a split is stratified by, beside the target
NO_LABEL = ("", "none", "nan", "u", "unknown")  # cells that say nothing (Adience: `None` ages, `u` genders)
GROUP_TEXT = re.compile(r"^\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)$")  # Adience's "(25, 32)"


def put_in_bin(value: float, bins: tuple[Bin, ...], what: str) -> str:
    """The bin holding `value`, else the nearest (a tie goes to the lower bin); a value below the first
    bin or above the last is an error."""
    if not bins[0].low <= value <= bins[-1].high:
        ranges = ", ".join(f"{b.label} {b.low:g}-{b.high:g}" for b in bins)
        raise UserError(f"{what} is outside every bin ({ranges}); fix the label, or add a bin for it "
                        f"with dataset.bins")
    return min(bins, key=lambda b: (b.distance(value), b.low)).label


def parse_bins(value) -> tuple[Bin, ...] | None:
    """`dataset.bins`: null, `age` (the 8 age groups) or a list of [label, low, high] in order."""
    if value is None:
        return None
    if value == "age":
        return AGE_GROUPS
    try:
        bins = tuple(Bin(str(label), float(low), float(high)) for label, low, high in value)
    except (TypeError, ValueError):
        raise UserError(f"dataset.bins={value} must be null, age, or a list of [label, low, high], e.g. "
                        "'[[child,0,12],[adult,13,inf]]'") from None
    if not bins or any(b.low > b.high for b in bins) or any(a.high >= b.low for a, b in zip(bins, bins[1:])):
        raise UserError(f"dataset.bins={value} must be non-empty bins in increasing order, each low <= high, "
                        "none overlapping")
    return bins


def number(text: str, what: str) -> float:
    """An age-like value: a number, or a group string `(a, b)` read as its middle."""
    group = GROUP_TEXT.match(text)
    if group:
        return (float(group[1]) + float(group[2])) / 2
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number; bins take numbers (or group strings such as "
                        "'(25, 32)')") from None


@dataclass(frozen=True)
class Field:
    """How one field's raw text becomes a label, and the labels it can have (in order when binned)."""

    name: str
    bins: tuple[Bin, ...] | None = None

    @property
    def ordered(self) -> bool:
        return self.bins is not None

    def label(self, raw, where: str) -> str | None:
        text = "" if raw is None else str(raw).strip()
        if text.lower() in NO_LABEL:
            return None
        what = f"{self.name} {text!r} of {where}"
        if self.bins is not None:
            return put_in_bin(number(text, what), self.bins, what)
        if self.name == "gender":
            return GENDERS.get(text.lower(), text if text in GENDER_LABELS else None)
        if self.name == "race" and text.isdigit() and int(text) < len(RACES):
            return RACES[int(text)]
        return text

    def class_names(self, labels: list[str]) -> list[str]:
        """The classes, in the bins' order for binned fields and gender's M, F; else sorted."""
        present = set(labels)
        if self.bins is not None:
            return [b.label for b in self.bins]
        if self.name == "gender" and present <= set(GENDER_LABELS):
            return list(GENDER_LABELS)
        if self.name == "race" and present <= set(RACES):
            return list(RACES)
        return sorted(present)


def make_field(name: str, bins=None) -> Field:
    """A field by name; `age` is binned into the age groups unless other bins are given."""
    parsed = parse_bins(bins)
    return Field(name, parsed if parsed is not None else (AGE_GROUPS if name == "age" else None))


@dataclass
class Labelled:
    """Images with every field's label: `fields[name][i]` is image i's label of that field."""

    paths: list
    fields: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.paths)


def split_labelled(items: Labelled, target: str, ratios, seed: int) -> dict[str, list[int]]:
    """Positions per split (train, val, test), seeded and stratified by the target and the face fields
    (age, gender, race) together, so that runs on different targets of the same folder share one split:
    no face of the age run's test split is in the gender run's training split."""
    ratios = list(ratios)
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise UserError(f"dataset.split={ratios} must be three fractions [train, val, test], e.g. [0.8, 0.1, 0.1]")
    names = sorted({target} | (STRATA_FIELDS & set(items.fields)))
    strata = ["|".join(items.fields[n][i] for n in names) for i in range(len(items))]
    parts = stratified_split(list(zip(range(len(items)), strata)), ratios, seed)
    return {split: sorted(i for i, _ in part) for split, part in zip(("train", "val", "test"), parts)}


def class_indices(labels: list[str], class_names: list[str]) -> np.ndarray:
    position = {name: i for i, name in enumerate(class_names)}
    return np.array([position[label] for label in labels], dtype=np.int64)


def label_rows(rows: list[tuple], target: Field, skipped: dict[str, int]) -> Labelled:
    """`Labelled` images from (path, {field: raw text}, where) rows: the target parsed by `target`, every
    other field by its name's rules (an empty one reads `unknown`); rows without a target label are
    counted in `skipped`."""
    paths, fields = [], {}
    for path, raw, where in rows:
        label = target.label(raw.get(target.name), where)
        if label is None:
            skipped[f"without a {target.name} label"] = skipped.get(f"without a {target.name} label", 0) + 1
            continue
        paths.append(path)
        for name, text in raw.items():
            value = label if name == target.name else make_field(name).label(text, where)
            fields.setdefault(name, []).append(value if value is not None else "unknown")
    return Labelled(paths, fields)


def labelled_data(cfg, rows: list[tuple], root, seed: int, skipped: dict[str, int]):
    """The `ImageData` of labelled image files, from (path, {field: raw text}, where) rows: classes from
    the target field (`dataset.target`, binned by `dataset.bins`), the other fields kept on each split for
    `eval by=<field>`, split by `split_labelled`, images decoded (and checked) as `dataset=folder` does.
    `skipped` counts images already left out, by reason."""
    import torch

    from cnnexp.data.image_data import ImageData, Split
    from cnnexp.data.images import image_size
    from cnnexp.data.sources.folder import FileImages, decode_all, report_unreadable
    from cnnexp.data.stream import fits_in_memory

    target = make_field(cfg.target, cfg.bins)
    known = sorted({name for _, raw, _ in rows for name in raw})
    if rows and target.name not in known:
        raise UserError(f"dataset.target={target.name} is not a label of these images; choose one of: "
                        f"{', '.join(known)}")
    items = label_rows(rows, target, skipped)
    if rows and not len(items):
        raise UserError(f"no image of {root} has a {target.name} label (the {target.name} values are all empty "
                        f"or unknown); choose another dataset.target")
    if not len(items):
        raise UserError(f"no labelled images under {root}")
    report_skipped(skipped, root)
    size, channels, resize = image_size(cfg.size), cfg.channels, cfg.resize
    class_names = target.class_names(items.fields[target.name])
    positions = split_labelled(items, target.name, cfg.split, seed)
    in_memory = fits_in_memory(cfg.in_memory, len(items) * channels * size[0] * size[1], cfg.memory_limit_mb)
    splits, bad = {}, []
    for name, chosen in positions.items():
        files = FileImages([items.paths[i] for i in chosen], channels, size, resize, cfg.workers, cfg.max_pixels)
        pixels, good, unreadable = decode_all(files, keep_pixels=in_memory)
        bad += unreadable
        kept = [chosen[g] for g in good]
        labels = class_indices([items.fields[target.name][i] for i in kept], class_names)
        fields = {field: [values[i] for i in kept] for field, values in items.fields.items()}
        kept_files = files.subset(good)
        splits[name] = Split(pixels if in_memory else kept_files, torch.from_numpy(labels), fields, kept_files.paths)
    report_unreadable(bad, root, cfg.strict)
    meta = {"source": str(root), "in_memory": in_memory, "skipped": len(bad) + sum(skipped.values()),
            "target": target.name, "ordered": target.ordered}
    return ImageData(splits, class_names, meta=meta)


def report_skipped(skipped: dict[str, int], root) -> None:
    """One warning line counting the images left out before decoding, by reason."""
    import sys

    counts = {reason: n for reason, n in skipped.items() if n}
    if counts:
        total = sum(counts.values())
        reasons = "; ".join(f"{n} {reason}" for reason, n in counts.items())
        sys.stderr.write(f"warning: skipped {total} image{'s' if total > 1 else ''} under {root}: {reasons}\n")
