"""Training curves of one or several runs on one figure, read from their history.csv (drawn by the
same function that keeps each run's curves.png up to date while it trains)."""

import csv
from pathlib import Path

from cnnexp.engine.curves import draw_curves
from cnnexp.engine.trainer import curves_title
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import load_run_config

NUMBERS = ("train_loss", "val_loss", "val_error", "test_error")


def read_history(run_dir: Path) -> list[dict]:
    """history.csv as the trainer's rows: ints for epoch and step, floats (or None) for the numbers."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        raise UserError(f"{run_dir} has no history.csv; give train run folders (outputs/train/<run>)")
    try:
        with open(path, newline="") as f:
            return [{"epoch": int(row["epoch"]), "step": int(row["step"]),
                     **{key: float(row[key]) if row.get(key) else None for key in NUMBERS}}
                    for row in csv.DictReader(f)]
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path} is not a cnnexp history ({exc}); give train run folders") from exc


def run_labels(runs: list[Path]) -> list[str]:
    """Folder names, or parent/name where two runs share a name (sweep jobs 0, 1, ... of several sweeps)."""
    names = [run.name for run in runs]
    return [f"{run.parent.name}/{run.name}" if names.count(run.name) > 1 else run.name for run in runs]


def compare_curves(runs: list[Path], path: Path) -> Path:
    """One run's curves (as its curves.png), or several runs' in one colour each, written atomically."""
    histories = {label: read_history(run) for label, run in zip(run_labels(runs), runs)}
    if not any(histories.values()):
        raise UserError(f"no evaluation recorded yet in {', '.join(map(str, runs))}; wait for the first epoch")
    if len(runs) == 1:
        histories, title = {"": histories[runs[0].name]}, curves_title(load_run_config(runs[0]), runs[0])
    else:
        title = f"{len(runs)} runs"
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(histories, path, title)
    return path
