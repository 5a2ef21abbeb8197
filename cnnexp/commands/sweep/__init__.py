"""`cnnexp sweep`: train every point of a grid with N seeds on Hydra multirun, then summarise.

    cnnexp sweep [sweep=<preset>] [key=v1,v2,... ...] [key=value ...] [seeds=N] [sweep.dir=<folder>]
    cnnexp sweep summarize dir=<folder> [sweep.metric=<metric>]

The runs are ordinary `train` jobs launched by Hydra (any launcher: basic, joblib, submitit), each
in `<sweep folder>/<swept key=value,...,seed=N>`: naming a run by its point instead of a job number
lets a re-run with `sweep.dir=` recognise finished runs even when the grid grew or was reordered.
The summary is rebuilt from the run folders alone, so it also works on a plain `train -m` multirun.
The package: plan (grid and seeds), folders (run folders and their state), job (one run), summary
(statistics), table (console, CSV, JSON, Markdown), plot (summary.png); this module is the command.
"""

import time
from pathlib import Path

from cnnexp.commands.sweep.folders import finished_runs, read_json, write_sweep_json
from cnnexp.commands.sweep.job import run_point
from cnnexp.commands.sweep.plan import Plan, check_plan, make_plan
from cnnexp.commands.sweep.summary import summarize
from cnnexp.utils.errors import UserError


CONFIG_NAME = "sweep"


HELP = "train a grid of configs x seeds (Hydra multirun); ends in a table, CSV/JSON/Markdown and a plot"


SETTINGS = ("sweep", "seeds")  # keys of conf/sweep.yaml; every other argument is a train override


METRICS = ("test_error", "best_val_error", "best_epoch", "epochs_run", "train_seconds", "images_per_second")




USAGE = """usage: cnnexp sweep [sweep=<preset>] [key=v1,v2,...] [key=value ...] [seeds=N] [sweep.metric=M] [sweep.dir=D]
       cnnexp sweep summarize dir=<sweep folder> [sweep.metric=M]

Trains every point of the grid (the cross product of the swept keys) with seeds 0..N-1, each run a
train run folder in outputs/sweep/<timestamp>/, then prints a table and writes summary.csv/json/md
and summary.png there. Give sweep.dir=<that folder> to finish an interrupted sweep: finished runs
(and recorded failures) are skipped. Launchers: hydra/launcher=joblib hydra.launcher.n_jobs=2
(parallel here), hydra/launcher=submitit_slurm (a cluster; pip install hydra-submitit-launcher).

presets (sweep=...): {presets}
metrics (sweep.metric=...): {metrics}

examples:
  cnnexp sweep sweep=lr seeds=3
  cnnexp sweep optimizer.lr=0.1,0.01 trainer.epochs=2 seeds=2
  cnnexp sweep model.nkerns='[20,50]','[10,30]' trainer.batch_size=20,40 hydra/launcher=joblib"""


def split_args(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Sweep settings (sweep=, sweep.*, seeds=), Hydra's own overrides (hydra/..., hydra.*) and the rest."""
    settings, hydra_args, train_args = [], [], []
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key in SETTINGS or key.startswith("sweep."):
            settings.append(arg)
        elif key in ("hydra.sweep.dir", "hydra.sweep.subdir"):
            raise UserError(f"the sweep folder is set with sweep.dir=<folder>, not {key} (run folders are "
                            f"named by their swept values, so that finished runs can be skipped)")
        elif key.startswith(("hydra.", "hydra/")):
            hydra_args.append(arg)
        else:
            train_args.append(arg)
    return settings, hydra_args, train_args


def compose_settings(args: list[str]):
    from cnnexp.config.compose import compose_config

    return compose_config(CONFIG_NAME, args)


def check_metric(metric) -> str:
    if metric not in METRICS:
        raise UserError(f"sweep.metric={metric!r} is not a run metric; choose one of: {', '.join(METRICS)}")
    return metric


def presets() -> list[str]:
    from cnnexp.config.compose import conf_dir

    return sorted(p.stem for p in (conf_dir() / "sweep").glob("*.yaml"))


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(presets=", ".join(presets()), metrics=", ".join(METRICS)))
        return 0
    if argv and argv[0] == "summarize":
        return summarize_command(argv[1:])
    settings_args, hydra_args, train_args = split_args(argv)
    settings = compose_settings(settings_args)
    metric = check_metric(settings.sweep.metric)
    plan = make_plan(settings, train_args)
    check_plan(plan)
    sweep_dir = sweep_folder(settings.sweep.dir)
    finished = finished_runs(sweep_dir, plan)
    todo = [run for run in plan.runs() if run not in finished]
    announce(plan, sweep_dir, len(todo))
    write_sweep_json(sweep_dir, plan, metric)
    if todo:
        started = time.perf_counter()
        launch(plan, sweep_dir, hydra_args)
        print(f"ran {len(todo)} run{'s' * (len(todo) != 1)} in {(time.perf_counter() - started) / 60:.1f} min")
    summarize(sweep_dir, metric)
    return 0


def sweep_folder(given) -> Path:
    from cnnexp.utils.runs import claim_run_dir

    if given is None:
        return Path(claim_run_dir("outputs/sweep"))
    folder = Path(str(given)).expanduser()
    if not folder.is_dir():
        raise UserError(f"sweep.dir={given} is not a folder; give an existing sweep folder, or leave it out "
                        f"to start a new sweep")
    return folder


def announce(plan: Plan, sweep_dir: Path, todo: int) -> None:
    points, total = len(plan.points()), len(plan.runs())
    keys = ", ".join(plan.grid) or "no swept keys"
    print(f"sweep: {points} point{'s' * (points != 1)} ({keys}) x {len(plan.seeds)} seed"
          f"{'s' * (len(plan.seeds) != 1)} = {total} run{'s' * (total != 1)} in {sweep_dir}")
    if todo == 0:
        print(f"all {points} points already done ({total} runs); nothing to run")
    elif todo < total:
        print(f"{total - todo} of {total} runs already done; running the other {todo}")


def launch(plan: Plan, sweep_dir: Path, hydra_args: list[str]) -> None:
    """Hand the grid to Hydra's multirun; each job folder is named by its swept values and seed."""
    from types import SimpleNamespace

    from cnnexp.config.app import launch as cli_launch

    exclude = ",".join(key.lstrip("+~") for key in plan.fixed)
    hydra_overrides = [
        f"hydra.sweep.dir='{sweep_dir}'",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]",
        *hydra_args,
    ]
    job = SimpleNamespace(CONFIG_NAME="train", run=run_point)
    cli_launch("sweep", job, ["--multirun", *plan.hydra_overrides(), *hydra_overrides])


def summarize_command(args: list[str]) -> int:
    values = dict(arg.split("=", 1) for arg in args if "=" in arg)
    unknown = [a for a in args if a.split("=", 1)[0] not in ("dir", "sweep.metric", "metric")]
    if unknown or "dir" not in values:
        raise UserError("usage: cnnexp sweep summarize dir=<sweep folder> [sweep.metric=test_error]")
    folder = Path(values["dir"]).expanduser()
    if not folder.is_dir():
        raise UserError(f"dir={values['dir']} is not a folder; give a sweep folder (outputs/sweep/<timestamp>)")
    saved = read_json(folder / "sweep.json") or {}
    metric = values.get("sweep.metric", values.get("metric", saved.get("metric", "test_error")))
    summarize(folder, check_metric(metric))
    return 0
