"""Training curves of one or several runs on one figure, read from their history.csv (drawn by the
same function that keeps each run's curves.png up to date while it trains)."""

import csv
from pathlib import Path

from omegaconf import OmegaConf

from cnnexp.engine.curves import draw_curves
from cnnexp.engine.records import curves_title
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import load_run_config

NUMBERS = ("train_loss", "val_loss", "val_error", "test_error")
IGNORED = {"trainer.resume"}  # config keys that do not make runs different
SHOWN_KEYS = 3


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


def flat_config(run_dir: Path) -> dict[str, str]:
    """The run's config as {"optimizer.lr": "0.05", ...}."""
    plain = OmegaConf.to_container(load_run_config(run_dir), resolve=False)
    flat, stack = {}, [("", plain)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                stack.append((f"{prefix}{key}.", value))
            else:
                flat[f"{prefix}{key}"] = str(value)
    return flat


def run_labels(runs: list[Path]) -> list[str]:
    """What tells the runs apart: the config keys whose values differ (at most SHOWN_KEYS of them, e.g.
    `optimizer.lr=0.1`), else the folder names."""
    configs = [flat_config(run) for run in runs]
    keys = sorted({key for config in configs for key in config})
    differing = [key for key in keys if len({config.get(key) for config in configs}) > 1 and key not in IGNORED]
    labels = [", ".join(f"{key}={config.get(key)}" for key in differing[:SHOWN_KEYS]) for config in configs]
    if not differing or len(set(labels)) < len(labels):
        return [f"{run.parent.name}/{run.name}" if [r.name for r in runs].count(run.name) > 1 else run.name
                for run in runs]
    return labels


def compare_curves(runs: list[Path], path: Path) -> Path:
    """One run's curves (as its curves.png), or several runs' in one colour each, written atomically."""
    histories = {label: read_history(run) for label, run in zip(run_labels(runs), runs)}
    if not any(histories.values()):
        raise UserError(f"no evaluation recorded yet in {', '.join(map(str, runs))}; wait for the first epoch")
    if len(runs) == 1:
        histories, title = {"": next(iter(histories.values()))}, curves_title(load_run_config(runs[0]), runs[0])
    else:
        title = f"{len(runs)} runs"
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(histories, path, title)
    return path
