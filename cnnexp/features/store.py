"""The features file: one HDF5 file, a group per split holding `features` (float32 N x D, chunked)
and `labels` (int64 N), and file attributes saying where the numbers came from (`label_names`,
`model`, `weights`, `layer`, `input_size`, `mean`, `std`, `source_run`, ...).

`FeatureWriter` holds at most `buffer_rows` rows in memory and writes them as one block, so memory
stays flat however many images there are. It writes under a temporary name beside the target and
renames only when every split is complete: a killed run never leaves a file under the final name.
`read_features` checks a file before a probe uses it and answers bad files with one line.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnexp.utils.choices import SPLITS
from cnnexp.utils.errors import UserError

FORMAT = "cnnexp-features"
CHUNK_BYTES = 2**20  # about 1 MiB per HDF5 chunk of features


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


def to_attr(value):
    """HDF5 attributes hold no None and no nested structures: None is "", a dict is JSON text, a list
    of strings a variable-length string array."""
    import h5py

    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    return value


class FeatureWriter:
    def __init__(self, path: Path, attrs: dict, buffer_rows: int):
        import h5py

        self.path, self.tmp = Path(path), temporary_path(Path(path))
        self.buffer_rows = max(1, int(buffer_rows))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(self.tmp, "w")
        except OSError as exc:
            raise UserError(f"cannot write {self.tmp} ({exc.strerror or exc}); give out= in a folder you can write to")
        self.file.attrs["format"] = FORMAT
        for key, value in attrs.items():
            self.file.attrs[key] = to_attr(value)
        self._features = self._labels = None
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = self._written = 0

    def begin_split(self, name: str, n: int, dim: int) -> None:
        group = self.file.create_group(name)
        rows = max(1, min(n, CHUNK_BYTES // (4 * dim)))
        self._features = group.create_dataset("features", (n, dim), dtype="float32", chunks=(rows, dim) if n else None)
        self._labels = group.create_dataset("labels", (n,), dtype="int64")
        self._written = 0

    def append(self, features: np.ndarray, labels: np.ndarray) -> None:
        self._buffer.append((features, labels))
        self._buffered += len(labels)
        if self._buffered >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        features = np.concatenate([f for f, _ in self._buffer])
        labels = np.concatenate([l for _, l in self._buffer])
        end = self._written + len(labels)
        self._features[self._written : end] = features
        self._labels[self._written : end] = labels
        self._written, self._buffer, self._buffered = end, [], 0

    def end_split(self) -> None:
        self.flush()
        if self._written != len(self._labels):
            raise RuntimeError(f"wrote {self._written} of {len(self._labels)} rows")

    def commit(self) -> None:
        """Close and move the complete file to its name."""
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.file.id.valid:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class FeatureSet:
    path: Path
    splits: dict  # name -> (float32 N x D array, int64 N array), read on demand by `arrays`
    attrs: dict
    label_names: list[str]
    dim: int

    def arrays(self, split: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        import h5py

        with h5py.File(self.path, "r") as handle:
            group = handle[split]
            if rows is None:
                return group["features"][:], group["labels"][:]
            return group["features"][np.sort(rows)], group["labels"][np.sort(rows)]


def decode_attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return [decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_features(path: Path) -> FeatureSet:
    """A checked features file: cnnexp's format, splits of matching width, labels within label_names."""
    import h5py

    if not path.is_file():
        raise UserError(f"features file {path} not found; make one with `cnnexp features run=<run> out={path}`")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path} is not an HDF5 file (or it is damaged); give a file written by `cnnexp features`")
    with handle:
        attrs = {k: decode_attr(v) for k, v in handle.attrs.items()}
        groups = [g for g in SPLITS if g in handle and "features" in handle[g] and "labels" in handle[g]]
        if not groups:
            raise UserError(f"{path} holds no split groups with features and labels (train, val, test); "
                            "give a file written by `cnnexp features`")
        splits = {g: (handle[g]["features"].shape, handle[g]["labels"].shape) for g in groups}
        names = attrs.get("label_names")
        ranges = {g: (int(labels.min()), int(labels.max())) for g in groups
                  if len(labels := handle[g]["labels"][:])}
    dims = {g: shape[1] if len(shape) == 2 else None for g, (shape, _) in splits.items()}
    if len(set(dims.values())) != 1 or None in dims.values():
        sizes = ", ".join(f"{g} {splits[g][0]}" for g in groups)
        raise UserError(f"{path}: the splits' features differ in size ({sizes}); extract all splits with one "
                        "`cnnexp features` command")
    for g, (shape, labels) in splits.items():
        if labels != (shape[0],):
            raise UserError(f"{path}: split {g} has {shape[0]} feature rows but {labels[0] if labels else 0} labels")
    if not names:
        raise UserError(f"{path} has no label_names attribute; give a file written by `cnnexp features`")
    for g, (low, high) in ranges.items():
        if low < 0 or high >= len(names):
            raise UserError(f"{path}: split {g} has labels outside 0..{len(names) - 1} (label_names has {len(names)}); "
                            "the file is damaged, extract the features again")
    return FeatureSet(path, splits, attrs, list(names), next(iter(dims.values())))
