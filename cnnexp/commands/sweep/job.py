"""The job Hydra runs for each point of a sweep."""

from cnnexp.commands import train
from cnnexp.commands.sweep.folders import set_aside
from cnnexp.utils.runs import current_run_dir


def run_point(cfg):
    """One sweep run: skipped when its folder already holds a result; an interrupted run starts again.

    The interrupted run is restarted rather than resumed from its last checkpoint: a seeded run
    started again reaches the same numbers, and what it had written is kept aside."""
    folder = current_run_dir()
    if (folder / "metrics.json").exists() or (folder / "failed.json").exists():
        print(f"already done: {folder}")
        return None
    set_aside(folder)
    return train.run(cfg)  # a failure is recorded in failed.json by cli.guarded, and the sweep goes on
