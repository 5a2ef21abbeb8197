"""Sweeps: train every point of a grid with N seeds on Hydra multirun (or the trials of an Optuna
study), then summarise. `cnnexp sweep` (commands/sweep.py) hands its arguments and the train command's
run function to `main` here.

    cnnexp sweep [sweep=<preset>] [key=v1,v2,... ...] [key=value ...] [seeds=N] [sweep.dir=<folder>]
    cnnexp sweep summarize dir=<folder> [sweep.metric=<metric>]

The runs are ordinary `train` jobs launched by Hydra (any launcher: basic, joblib, submitit), each
in `<sweep folder>/<swept key=value,...,seed=N>`: naming a run by its point instead of a job number
lets a re-run with `sweep.dir=` recognise finished runs even when the grid grew or was reordered.
The summary is rebuilt from the run folders alone, so it also works on a plain `train -m` multirun.

The package: plan (grid and seeds), folders (run folders and their state), job (one run), summary
(statistics), table (console, CSV, JSON, Markdown), plot (summary.png), search (Optuna); this module
runs a sweep from its arguments.
"""

import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from cnnexp.sweeps.multirun import OFF as SUMMARY_OFF
from cnnexp.sweeps.folders import finished_runs, read_json, write_sweep_json
from cnnexp.sweeps.plan import Plan, check_plan, make_plan, parse_overrides
from cnnexp.sweeps.summary import summarize
from cnnexp.runner.app import launch as launch_app
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import claim_run_dir
from cnnexp.utils.text import plural


CONFIG_NAME = "sweep"
SETTINGS = ("sweep", "seeds", "search", "trials", "sampler", "pruner", "startup_trials", "storage", "study",
            "heartbeat", "trial_retries")
# ^ keys of conf/sweep.yaml; every other argument is a train override
METRICS = ("best_val_error", "test_error", "best_epoch", "epochs_run", "train_seconds", "images_per_second")
DEFAULT_METRIC = METRICS[0]  # choices are made on the validation split; the test error is shown beside it
HYDRA_ONLY = ("--help", "-h", "--cfg", "-c", "--info", "--resolve", "-p", "--package")


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


def is_swept(arg: str) -> bool:
    """`key=a,b` (or choice()/range()): a value of the grid, not of the config."""
    return "=" in arg and not arg.startswith("-") and parse_overrides([arg])[0].is_sweep_override()


def compose_settings(args: list[str]):
    from cnnexp.runner.compose import compose_config

    return compose_config(CONFIG_NAME, args)


def check_metric(metric) -> str:
    if metric not in METRICS:
        raise UserError(f"sweep.metric={metric!r} is not a run metric; choose one of: {', '.join(METRICS)}")
    return metric


def main(argv: list[str], train_run) -> int:
    """The sweep (each run `train_run(cfg)`): compose conf/sweep.yaml (the train config plus the sweep keys), plan the grid, launch
    the train app in multirun over the runs not yet done, summarise. `--help` and `--cfg job` show
    that config (without the swept values); `cnnexp sweep summarize` is an app of its own."""
    if argv and argv[0] == "summarize":
        return launch_app("sweep summarize", SUMMARIZE, argv[1:])
    if any(a.split("=")[0] in HYDRA_ONLY for a in argv) or argv == ["help"]:
        return launch_app("sweep", SHOW, ["--help" if a == "help" else a for a in argv if not is_swept(a)])
    run_sweep(argv, train_run)
    return 0


def run_sweep(args: list[str], train_run, tuned: bool = True) -> tuple[Path, dict]:
    """The sweep of `args` (a grid or an Optuna search; each run `train_run(cfg)`) run to its end: (the
    sweep folder, its summary as summary.json holds it). Failed runs are in the summary, not raised.
    `tuned`: whether the jobs apply the command line's process-wide tunings (not from the library)."""
    settings_args, hydra_args, train_args = split_args(args)
    settings = compose_settings(settings_args)
    metric = check_metric(settings.sweep.metric)
    if settings.search == "optuna":
        sweep_dir = optuna_search(settings, train_args, hydra_args, train_run, tuned)
    elif settings.search == "grid":
        sweep_dir = grid_search(settings, train_args, hydra_args, metric, train_run, tuned)
    else:
        raise UserError(f"search={settings.search} is not one of: grid, optuna")
    return sweep_dir, summarize(sweep_dir, metric)


def grid_search(settings, train_args: list[str], hydra_args: list[str], metric: str, train_run, tuned: bool) -> Path:
    """The runs of the grid not done yet in the sweep folder (which it returns)."""
    plan = make_plan(settings, train_args)
    check_plan(plan)
    sweep_dir = sweep_folder(settings.sweep.dir)
    finished = finished_runs(sweep_dir, plan)
    todo = [run for run in plan.runs() if run not in finished]
    announce(plan, sweep_dir, len(todo))
    write_sweep_json(sweep_dir, plan, metric)
    if todo:
        started = time.perf_counter()
        launch(plan, sweep_dir, hydra_args, train_run, tuned)
        print(f"ran {len(todo)} run{'s' * (len(todo) != 1)} in {(time.perf_counter() - started) / 60:.1f} min")
    return sweep_dir


def optuna_search(settings, train_args: list[str], hydra_args: list[str], train_run, tuned: bool) -> Path:
    """`search=optuna`: trials of an Optuna study instead of a grid (see sweep/search.py); the sweep folder."""
    from cnnexp.sweeps.search import prepare, run_search

    fixed, space = prepare(settings, train_args)
    sweep_dir = sweep_folder(settings.sweep.dir)
    started = time.perf_counter()
    ran = run_search(settings, fixed, space, hydra_args, sweep_dir, train_run, tuned)
    print(f"ran {ran} trial{'s' * (ran != 1)} in {(time.perf_counter() - started) / 60:.1f} min")
    return sweep_dir


def sweep_folder(given) -> Path:
    """A new `outputs/sweep/<timestamp>`, or the folder given: made when it does not exist yet (a new
    sweep), continued when it does (so a job script can run the same command again after a preemption)."""
    if given is None:
        return Path(claim_run_dir("outputs/sweep"))
    folder = Path(str(given)).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"sweep.dir={given} is a file; give a folder (new or an earlier sweep's)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def announce(plan: Plan, sweep_dir: Path, todo: int) -> None:
    points, total = len(plan.points()), len(plan.runs())
    keys = ", ".join(plan.grid) or "no swept keys"
    print(f"sweep: {points} point{'s' * (points != 1)} ({keys}) x {len(plan.seeds)} seed"
          f"{'s' * (len(plan.seeds) != 1)} = {total} run{'s' * (total != 1)} in {sweep_dir}")
    if todo == 0:
        print(f"all {plural(points, 'point')} already done ({plural(total, 'run')}); nothing to run")
    elif todo < total:
        print(f"{total - todo} of {plural(total, 'run')} already done; running the other {todo}")


def launch(plan: Plan, sweep_dir: Path, hydra_args: list[str], train_run, tuned: bool) -> None:
    """Hand the grid to Hydra's multirun; each job folder is named by its swept values and seed."""
    from cnnexp.sweeps.job import run_point

    exclude = ",".join(key.lstrip("+~") for key in plan.fixed)
    hydra_overrides = [
        f"hydra.sweep.dir='{sweep_dir}'",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]",
        SUMMARY_OFF,
        *hydra_args,
    ]
    job = SimpleNamespace(CONFIG_NAME="train", run=partial(run_point, train_run=train_run), TUNED=tuned)
    launch_app("sweep", job, ["--multirun", *plan.hydra_overrides(), *hydra_overrides])


def summarize_run(cfg) -> None:
    """`cnnexp sweep summarize dir=<folder>`: the table, files and plot rebuilt from the run folders."""
    folder = Path(cfg.dir).expanduser() if cfg.dir is not None else None
    if folder is None or not folder.is_dir():
        raise UserError(f"dir={cfg.dir} is not a folder; give a sweep folder (outputs/sweep/<timestamp>)")
    saved = read_json(folder / "sweep.json") or {}
    summarize(folder, check_metric(cfg.sweep.metric or saved.get("metric", DEFAULT_METRIC)))


SHOW = SimpleNamespace(CONFIG_NAME=CONFIG_NAME, run=None)  # for --help and --cfg, which never run a job
SUMMARIZE = SimpleNamespace(CONFIG_NAME="sweep_summarize", run=summarize_run)
