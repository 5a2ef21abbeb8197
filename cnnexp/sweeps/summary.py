"""The summary of a sweep: statistics over seeds per grid point, rebuilt from the run folders alone."""

import statistics
from pathlib import Path

from cnnexp.sweeps.folders import Run, load_runs, read_json, run_key
from cnnexp.sweeps.plan import override_value
from cnnexp.sweeps.plot import numbers, plot_summary
from cnnexp.sweeps.table import STAT_METRICS, SUMMARY_FILES, choice_line, rich_table, write_summary
from cnnexp.utils.errors import UserError
from cnnexp.utils.files import display_path
from cnnexp.utils.text import WIDTH, fold


def summarize(sweep_dir: Path, metric: str) -> dict:
    from rich.console import Console

    runs = load_runs(sweep_dir)
    if not runs:
        raise UserError(f"{sweep_dir} holds no run folders; give the folder a sweep wrote "
                        f"(outputs/sweep/<timestamp>)")
    if read_json(sweep_dir / "sweep.json") is None:  # runs gathered by hand: `2e-3` and `0.002` are one point
        canonicalize(runs)
    keys, orders = point_keys(sweep_dir, runs)
    rows = aggregate(runs, keys, metric)
    summary = {"sweep_dir": str(sweep_dir), "metric": metric, "keys": keys, "points": rows}
    summary["best"] = next((row["values"] for row in rows if row[metric]["mean"] is not None), None)
    write_summary(sweep_dir, summary)
    plot_summary(rows, keys, orders, metric, sweep_dir / "summary.png")
    console = Console(width=WIDTH)  # as wide in a log file or a pipe as on a terminal
    console.print(f"cnnexp sweep: {display_path(sweep_dir)}", highlight=False, soft_wrap=True)
    console.print(rich_table(summary))
    if choice_line(summary):
        console.print(fold(choice_line(summary)), highlight=False)
    for row in rows:
        for run in row["runs"]:
            if run["error"]:
                console.print(fold(f"{run['status']}: {display_path(run['folder'])}\n  {run['error']}"),
                              style="red", highlight=False, markup=False)
    console.print(fold(f"wrote {', '.join(SUMMARY_FILES)} in {display_path(sweep_dir)}; compare the runs in "
                       f"TensorBoard's HPARAMS tab: tensorboard --logdir {display_path(sweep_dir)}"), highlight=False)
    return summary


def canonicalize(runs: list[Run]) -> None:
    """Each run's override values as Hydra reads them, written one way (`False` -> false, `2e-3` -> 0.002)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for run in runs:
        for key, value in run.overrides.items():
            try:
                run.overrides[key] = override_value(parser.parse_override(f"{key.lstrip('+~')}={value}").value())
            except HydraException:
                pass  # not Hydra syntax: compared as written


def sort_key(value: str):
    """Numbers in numeric order, then everything else in text order."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def point_keys(sweep_dir: Path, runs: list[Run]) -> tuple[list[str], dict]:
    """The swept keys (those of sweep.json, else those whose value differs between runs, seed
    aside) and the order of each key's values: numeric order for numbers, else the grid's order."""
    saved = (read_json(sweep_dir / "sweep.json") or {}).get("grid") or {}
    varying = [k for k in dict.fromkeys(k for run in runs for k in run.overrides)
               if k != "seed" and len({run.overrides.get(k) for run in runs}) > 1]
    keys = list(saved) + [k for k in varying if k not in saved]
    orders = {}
    for key in keys:
        found = sorted({run.overrides.get(key, "-") for run in runs}, key=sort_key)
        ordered = numbers(found) is not None  # numbers in numeric order, whatever order the command gave
        given = [] if ordered else [v for v in saved.get(key, []) if v in found]
        orders[key] = given + [v for v in found if v not in given]
    return keys, orders


def stats(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one run), min and max; all None without values."""
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def aggregate(runs: list[Run], keys: list[str], metric: str) -> list[dict]:
    """One row per grid point, statistics over its successful runs; sorted by the metric's mean."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run_key(run.overrides, keys), []).append(run)
    rows = []
    for point, members in groups.items():
        good = [r for r in members if r.ok]
        row = {"values": dict(zip(keys, point)), "runs_total": len(members), "runs_ok": len(good),
               "failed": sum(r.status in ("failed", "diverged") for r in members),
               "unfinished": sum(r.status == "unfinished" for r in members),
               "pruned": sum(r.status == "pruned" for r in members)}
        for name in dict.fromkeys((*STAT_METRICS, metric)):
            numbers = [float(r.metrics[name]) for r in good if r.metrics.get(name) is not None]
            row[name] = stats(numbers)
        row["runs"] = [run_record(r) for r in members]
        rows.append(row)
    sign = -1 if metric == "images_per_second" else 1
    rows.sort(key=lambda r: (r[metric]["mean"] is None, sign * (r[metric]["mean"] or 0.0)))
    return rows


def run_record(run: Run) -> dict:
    error = run.error if run.error is not None else ("diverged" if run.status == "diverged" else None)
    return {"folder": str(run.folder), "seed": run.overrides.get("seed"), "status": run.status, "error": error,
            "metrics": run.metrics}
