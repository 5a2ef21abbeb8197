"""`cnnexp.sweeps`: the runs of a grid (or an Optuna search) as `cnnexp sweep` makes them, from Python."""

import sys
from dataclasses import dataclass
from pathlib import Path

from cnnexp.utils.errors import RunError


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: its folder (one run folder a point and seed, summary.csv/json/md, summary.png)
    and its summary (summary.json's content: the metric, the swept keys, each point's mean and spread
    over seeds with its runs, failed ones included, and the best point's values)."""

    folder: Path
    summary: dict

    @property
    def plot(self) -> Path:
        """summary.png: the metric against each swept key (in a notebook: `IPython.display.Image(sweep.plot)`)."""
        return self.folder / "summary.png"


def sweep(*overrides: str) -> Sweep:
    """Run a sweep as `cnnexp sweep <overrides>` does and return it: `"optimizer.lr=0.1,0.05,0.01"` (a
    swept key), `"seeds=3"`, `"sweep=lr"` (a preset), `"sweep.dir=<folder>"` (continue a sweep: finished
    runs are skipped), `"search=optuna"`, and train overrides. Failed runs are listed in the summary, not
    raised; bad input raises a `cnnexp.errors` exception before any run starts."""
    from cnnexp.apis.training import train_config
    from cnnexp.sweeps.run import run_sweep
    from cnnexp.utils.runs import current_overrides, current_run_dir

    def train_job(cfg, on_evaluation=None) -> dict:
        return train_config(cfg, current_run_dir(), current_overrides(), on_evaluation, from_python=True)

    argv = sys.argv  # Hydra's multirun reads its arguments from sys.argv: put back afterwards
    try:
        folder, summary = run_sweep([str(o) for o in overrides], train_job, tuned=False)
    except SystemExit as exc:  # Hydra ends a multirun that stopped (an interrupt) with SystemExit
        raise RunError(f"the sweep stopped before its end (exit code {exc.code}); the runs it finished are kept: "
                       "call cnnexp.sweep() again with the same overrides and sweep.dir=<its folder> to finish it") from None
    finally:
        sys.argv = argv
    return Sweep(folder, summary)
