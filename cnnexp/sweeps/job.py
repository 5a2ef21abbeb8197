"""The job Hydra runs for each point of a sweep."""

from cnnexp.sweeps.folders import read_json
from cnnexp.utils.files import exclusive_lock
from cnnexp.utils.runs import current_run_dir, set_aside


def run_point(cfg, train_run):
    """One sweep run (`train_run(cfg)`, the train command's): skipped when its folder already holds a result or another process (a second
    `cnnexp sweep sweep.dir=` on the same folder) is training it; an interrupted run starts again.

    The interrupted run is restarted rather than resumed from its last checkpoint: a seeded run
    started again reaches the same numbers, and what it had written is kept aside."""
    folder = current_run_dir()
    with exclusive_lock(folder) as mine:
        if not mine:
            print(f"another process is training {folder}; skipped here")
            return None
        if is_done(folder):
            print(f"already done: {folder}")
            return None
        set_aside(folder)
        return train_run(cfg)  # a failure is recorded in failed.json by cli.guarded, and the sweep goes on


def is_done(folder) -> bool:
    """Finished, diverged or failed; a run stopped by SIGINT/SIGTERM (metrics.json says interrupted) is not."""
    metrics = read_json(folder / "metrics.json")
    finished = isinstance(metrics, dict) and not metrics.get("interrupted")
    return finished or (folder / "failed.json").exists()
