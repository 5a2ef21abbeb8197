"""`cnnexp train -m ...` (Hydra's multirun): the one-screen summary it ends with, one row per run.

A Hydra callback (conf/train.yaml's `hydra.callbacks`), so that every launcher's multirun ends with it
in the process that launched the jobs; `cnnexp sweep` removes it and prints its own table."""

from pathlib import Path

from hydra.experimental.callback import Callback

from cnnexp.sweeps.folders import Run, load_runs
from cnnexp.utils.files import display_path
from cnnexp.utils.text import WIDTH, fold, plural

OFF = "~hydra.callbacks.multirun_summary"  # the override with which a sweep's jobs go without this summary


class MultirunSummary(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        print_summary(Path(str(config.hydra.sweep.dir)))


def print_summary(sweep_dir: Path) -> None:
    """The runs in job order: the overrides that differ between them, val and test error, status, folder;
    the overrides every run shares once above the table, and the run with the lowest validation error."""
    from rich.console import Console
    from rich.table import Table

    runs = sorted(load_runs(sweep_dir), key=lambda run: job_order(run.folder.name))
    if not runs:
        return
    shared, varied = split_overrides(runs)
    console = Console(width=WIDTH, highlight=False)
    console.print(fold(f"cnnexp train -m: {plural(len(runs), 'run')} in {display_path(sweep_dir)}/<job>"))
    if shared:
        console.print(fold(f"every run: {' '.join(shared)}"))
    table = Table(box=None, pad_edge=False)
    for name, justify in (("job", "right"), ("overrides", "left"), ("val err", "right"), ("test err", "right"),
                          ("status", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for run in runs:
        overrides = " ".join(f"{key}={run.overrides[key]}" for key in varied if key in run.overrides)
        table.add_row(run.folder.name, overrides or "-", error_text(run, "best_val_error"),
                      error_text(run, "test_error"), run.status)
    console.print(table)
    done = [run for run in runs if run.ok and run.metrics.get("best_val_error") is not None]
    if done:
        best = min(done, key=lambda run: run.metrics["best_val_error"])
        console.print(fold(f"lowest validation error: job {best.folder.name}, test error "
                           f"{error_text(best, 'test_error')}"))


def job_order(name: str):
    """Hydra's job folders 0, 1, ..., 10 in number order (a custom hydra.sweep.subdir in text order)."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def split_overrides(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(`key=value` every run has alike, the keys whose values differ between runs), in command order."""
    keys = list(dict.fromkeys(key for run in runs for key in run.overrides))
    shared = [key for key in keys if all(run.overrides.get(key) == runs[0].overrides.get(key) for run in runs)]
    return [f"{key}={runs[0].overrides[key]}" for key in shared], [key for key in keys if key not in shared]


def error_text(run: Run, metric: str) -> str:
    value = (run.metrics or {}).get(metric)
    return "-" if value is None else f"{100 * value:.2f} %"
