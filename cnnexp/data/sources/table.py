"""`dataset=table`: images listed in a table (CSV, or TSV such as Adience's `fold_N_data.txt`), one row
an image, its labels in columns. `dataset.path` names the column that holds each image's path, or is a
template of columns (Adience: `{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}`); every
other column is a field, `dataset.target` the one the network learns. Rows whose file is missing are
counted and skipped (named with `dataset.strict=true`); rows without a target label are counted and
skipped."""

import csv
import re
from pathlib import Path

from cnnexp.data.registry import register_dataset
from cnnexp.data.image_data import ImageData
from cnnexp.data.labels import labelled_data
from cnnexp.data.sources.folder import user_path
from cnnexp.utils.errors import UserError

TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")


def read_table(path: Path, sep) -> tuple[list[str], list[dict]]:
    """The table's columns and rows; `sep` null guesses comma or tab from the first line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"dataset.file={path} does not exist; give the CSV/TSV table of images") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read dataset.file={path} ({exc}); give a UTF-8 CSV/TSV table") from None
    lines = text.splitlines()
    if not lines:
        raise UserError(f"dataset.file={path} is empty; give a table with a header line")
    delimiter = sep if sep else ("\t" if "\t" in lines[0] else ",")
    reader = csv.DictReader(lines, delimiter=delimiter, skipinitialspace=True)
    columns = [c.strip() for c in reader.fieldnames or []]
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return columns, rows


def path_of(template: str, row: dict) -> str:
    return TEMPLATE_FIELD.sub(lambda m: row[m[1]], template) if "{" in template else row[template]


def check_columns(path_spec: str, target: str, columns: list[str], table: Path) -> list[str]:
    """The columns the path is made of; every named column must exist."""
    used = TEMPLATE_FIELD.findall(path_spec) if "{" in path_spec else [path_spec]
    for key, name in [("dataset.path", c) for c in used] + [("dataset.target", target)]:
        if name not in columns:
            raise UserError(f"{key}: {table.name} has no column {name!r}; its columns are: {', '.join(columns)}")
    return used


@register_dataset
def table(cfg, seed: int = 0) -> ImageData:
    table_file = user_path(cfg.file, "dataset.file")
    root = user_path(cfg.root, "dataset.root") if cfg.root else table_file.parent
    columns, records = read_table(table_file, cfg.sep)
    path_columns = check_columns(cfg.path, cfg.target, columns, table_file)
    fields = [c for c in (cfg.fields if cfg.fields is not None else columns) if c not in path_columns]
    rows, missing = [], []
    for number, record in enumerate(records, start=2):  # line 1 is the header
        path = root / path_of(cfg.path, record)
        if not path.is_file():
            missing.append(f"{path} (line {number})")
            continue
        rows.append((path, {f: record.get(f, "") for f in fields}, f"{table_file.name} line {number}"))
    if missing and cfg.strict:
        raise UserError(f"{missing[0]} in dataset.file does not exist; restore it, or set dataset.strict=false "
                        "to skip rows whose file is missing")
    return labelled_data(cfg, rows, table_file, seed, {"whose file is missing": len(missing)})
