"""The sweep folder: its run folders and their state, sweep.json, and what an interrupted run left."""

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from cnnexp.sweeps.plan import Plan
from cnnexp.utils.errors import UserError
from cnnexp.utils.files import write_json_atomic


@dataclass
class Run:
    folder: Path
    overrides: dict
    metrics: dict | None
    error: str | None

    @property
    def status(self) -> str:
        if self.metrics and self.metrics.get("interrupted"):  # stopped by SIGINT/SIGTERM: to run again
            return "unfinished"
        if self.metrics and self.metrics.get("diverged"):
            return "diverged"
        if self.metrics and self.metrics.get("pruned"):  # stopped by an Optuna search: neither done nor failed
            return "pruned"
        if self.error is not None:
            return "failed"
        return "done" if self.metrics is not None else "unfinished"

    @property
    def ok(self) -> bool:
        return self.status == "done"


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def overrides_of(folder: Path) -> dict:
    lines = OmegaConf.load(folder / ".hydra" / "overrides.yaml")
    return dict(str(line).split("=", 1) for line in lines if "=" in str(line))


def load_runs(sweep_dir: Path) -> list[Run]:
    """Every job folder under the sweep folder (those Hydra wrote `.hydra/overrides.yaml` in)."""
    runs = []
    for marker in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        folder = marker.parent.parent
        if folder == sweep_dir or "interrupted" in folder.relative_to(sweep_dir).parts:
            continue
        failed = read_json(folder / "failed.json")
        runs.append(Run(folder, overrides_of(folder), read_json(folder / "metrics.json"),
                        failed.get("error", "failed") if isinstance(failed, dict) else None))
    return runs


def run_key(overrides: dict, keys) -> tuple:
    return tuple(overrides.get(k, "-") for k in keys)


def finished_runs(sweep_dir: Path, plan: Plan) -> set[tuple]:
    """(point, seed) of the runs of this plan already finished (or failed) in sweep_dir.

    A run of the same point made with other fixed overrides is refused: skipping it would mix two
    different experiments in one table."""
    finished, wanted = set(), set(plan.runs())
    for run in load_runs(sweep_dir):
        key = (run_key(run.overrides, plan.grid), run.overrides.get("seed"))
        if key not in wanted:
            continue
        fixed = {k: f"{k}={v}" for k, v in run.overrides.items() if k not in plan.grid and k != "seed"}
        if fixed != plan.fixed:
            theirs, ours = sorted(set(fixed.values()) - set(plan.fixed.values())), sorted(
                set(plan.fixed.values()) - set(fixed.values()))
            raise UserError(f"{run.folder} was trained with {theirs or 'no extra overrides'} instead of "
                            f"{ours or 'no extra overrides'}; use the same overrides or a new sweep.dir")
        if run.status != "unfinished":
            finished.add(key)
    return finished


def write_sweep_json(sweep_dir: Path, plan: Plan, metric: str) -> None:
    """The grid of this command merged with the one an earlier command wrote in the same folder
    (a continued sweep may add values or run a single point again); the summary orders keys and
    values by it."""
    old = read_json(sweep_dir / "sweep.json") or {}
    grid = {key: list(values) for key, values in (old.get("grid") or {}).items()}
    for key, values in plan.grid.items():
        grid[key] = merge_order(values, grid.get(key, []))
    seeds = merge_order(plan.seeds, old.get("seeds") or [])
    write_json_atomic({"grid": grid, "seeds": seeds, "overrides": list(plan.fixed.values()), "metric": metric},
                      sweep_dir / "sweep.json")


def merge_order(new: list, old: list) -> list:
    """Every value of both, in the new order when it adds values, else in the old one."""
    if set(new) <= set(old):
        return list(old)
    return list(new) + [v for v in old if v not in new]
