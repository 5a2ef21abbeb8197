"""`cnnexp sweep`: train every point of a grid with N seeds on Hydra multirun, then summarise.

    cnnexp sweep [sweep=<preset>] [key=v1,v2,... ...] [key=value ...] [seeds=N] [sweep.dir=<folder>]
    cnnexp sweep summarize dir=<folder> [sweep.metric=<metric>]

The runs are ordinary `train` jobs launched by Hydra (any launcher: basic, joblib, submitit), each
in `<sweep folder>/<swept key=value,...,seed=N>`: naming a run by its point instead of a job number
lets a re-run with `sweep.dir=` recognise finished runs even when the grid grew or was reordered.
The summary is rebuilt from the run folders alone, so it also works on a plain `train -m` multirun.
"""

import csv
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from cnnexp.utils.errors import UserError

CONFIG_NAME = "sweep"
HELP = "train a grid of configs x seeds (Hydra multirun); ends in a table, CSV/JSON/Markdown and a plot"
SETTINGS = ("sweep", "seeds")  # keys of conf/sweep.yaml; every other argument is a train override
METRICS = ("test_error", "best_val_error", "best_epoch", "epochs_run", "train_seconds", "images_per_second")
SUMMARY_FILES = ("summary.csv", "summary.json", "summary.md", "summary.png")
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


# ---- the plan: which runs a sweep is made of ----------------------------------------------------
@dataclass
class Plan:
    """Fixed train overrides, the grid (key -> value strings, in order) and the seeds."""

    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    seeds: list = field(default_factory=list)

    def points(self) -> list[tuple]:
        return list(itertools.product(*self.grid.values()))

    def runs(self) -> list[tuple]:
        """(point, seed) for every run, in launch order."""
        return [(point, seed) for point in self.points() for seed in self.seeds]

    def hydra_overrides(self) -> list[str]:
        swept = [f"{key}={','.join(values)}" for key, values in self.grid.items()]
        return [*self.fixed.values(), *swept, f"seed={','.join(self.seeds)}"]


def override_value(value) -> str:
    """A YAML value from a preset's grid, written as Hydra override syntax."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value)


def parse_overrides(args: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        raise UserError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from exc


def make_plan(settings, train_args: list[str]) -> Plan:
    """Preset grid and overrides first, then the command line's (which win, key by key)."""
    plan = Plan()
    for line in settings.sweep.overrides:
        plan.fixed[line.split("=", 1)[0]] = str(line)
    for key, values in settings.sweep.grid.items():
        values = OmegaConf.to_container(values) if OmegaConf.is_list(values) else values
        if not isinstance(values, list) or not values:
            raise UserError(f"sweep.grid.{key} must be a non-empty list of values, e.g. [0.1, 0.01]")
        plan.grid[key] = [override_value(v) for v in values]
    for override in parse_overrides(train_args):
        key = override.get_key_element()
        plan.fixed.pop(key, None)
        plan.grid.pop(key, None)
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise UserError(f"'{override.input_line}': only lists (a,b,c), choice() and range() can be swept")
            plan.grid[key] = list(override.sweep_string_iterator())
        else:
            plan.fixed[key] = override.input_line
    plan.seeds = seeds_of(plan, settings.seeds)
    return plan


def seeds_of(plan: Plan, seeds) -> list[str]:
    """`seeds=N` means seed=0..N-1; an explicit `seed=...` (fixed or swept) is taken as given."""
    given = plan.grid.pop("seed", None) or ([plan.fixed.pop("seed").split("=", 1)[1]] if "seed" in plan.fixed
                                            else None)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UserError(f"seeds={seeds!r} must be an integer >= 1 (the number of seeds per grid point)")
    if given and seeds > 1:
        raise UserError("give either seeds=N or seed=..., not both")
    return given or [str(s) for s in range(seeds)]


def check_plan(plan: Plan) -> None:
    """Compose the train config with every value of every key once, so a typo is one line, up front."""
    from cnnexp.config.app import check_composes

    first = {key: values[0] for key, values in plan.grid.items()}
    variants = [first] + [{**first, key: v} for key, values in plan.grid.items() for v in values[1:]]
    for point in variants:
        check_composes("train", [*plan.fixed.values(), *(f"{k}={v}" for k, v in point.items()),
                                 f"seed={plan.seeds[0]}"])


# ---- run folders -------------------------------------------------------------------------------
@dataclass
class Run:
    folder: Path
    overrides: dict
    metrics: dict | None
    error: str | None

    @property
    def status(self) -> str:
        if self.metrics and self.metrics.get("diverged"):
            return "diverged"
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


# ---- the job Hydra runs for each point ---------------------------------------------------------
def run_point(cfg):
    """One sweep run: skipped when its folder already holds a result; an interrupted run starts again.

    The interrupted run is restarted rather than resumed from its last checkpoint: a seeded run
    started again reaches the same numbers, and what it had written is kept aside."""
    from cnnexp.commands import train
    from cnnexp.utils.runs import current_run_dir

    folder = current_run_dir()
    if (folder / "metrics.json").exists() or (folder / "failed.json").exists():
        print(f"already done: {folder}")
        return None
    set_aside(folder)
    return train.run(cfg)  # a failure is recorded in failed.json by cli.guarded, and the sweep goes on


def set_aside(folder: Path) -> None:
    """Move what an interrupted run left (checkpoints, history, events) into `interrupted[-N]/`, so
    the run can start again in its own folder and nothing already written is lost."""
    leftovers = [p for p in folder.iterdir() if p.name in ("checkpoints", "history.csv", "config.yaml")
                 or p.name.startswith("events.out.tfevents")]
    if not any(p.name in ("checkpoints", "history.csv") for p in leftovers):
        return
    target, n = folder / "interrupted", 1
    while target.exists():
        n += 1
        target = folder / f"interrupted-{n}"
    target.mkdir()
    for path in leftovers:
        path.rename(target / path.name)
    print(f"restarting the interrupted run; what it had written is kept in {target}")


# ---- the command -------------------------------------------------------------------------------
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


def write_sweep_json(sweep_dir: Path, plan: Plan, metric: str) -> None:
    """The grid of this command merged with the one an earlier command wrote in the same folder
    (a continued sweep may add values or run a single point again); the summary orders keys and
    values by it."""
    from cnnexp.utils.files import write_json_atomic

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


# ---- the summary -------------------------------------------------------------------------------
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


def summarize(sweep_dir: Path, metric: str) -> dict:
    from rich.console import Console

    runs = load_runs(sweep_dir)
    if not runs:
        raise UserError(f"{sweep_dir} holds no run folders; give the folder a sweep wrote "
                        f"(outputs/sweep/<timestamp>)")
    keys, orders = point_keys(sweep_dir, runs)
    rows = aggregate(runs, keys, metric)
    summary = {"sweep_dir": str(sweep_dir), "metric": metric, "keys": keys, "points": rows}
    write_summary(sweep_dir, summary)
    plot_summary(rows, keys, orders, metric, sweep_dir / "summary.png")
    console = Console()
    if not console.is_terminal:  # a log file: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(rich_table(summary))
    for row in rows:
        for run in row["runs"]:
            if run["error"]:
                console.print(f"[red]{run['status']}[/]: {run['folder']}: {run['error']}", highlight=False,
                              soft_wrap=True)
    console.print(f"wrote {', '.join(SUMMARY_FILES)} in {sweep_dir}; compare the runs in TensorBoard's "
                  f"HPARAMS tab: tensorboard --logdir {sweep_dir}", highlight=False, soft_wrap=True)
    return summary


def sort_key(value: str):
    """Numbers in numeric order, then everything else in text order."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def point_keys(sweep_dir: Path, runs: list[Run]) -> tuple[list[str], dict]:
    """The swept keys (those of sweep.json, else those whose value differs between runs, seed
    aside) and the order of each key's values."""
    saved = (read_json(sweep_dir / "sweep.json") or {}).get("grid") or {}
    varying = [k for k in dict.fromkeys(k for run in runs for k in run.overrides)
               if k != "seed" and len({run.overrides.get(k) for run in runs}) > 1]
    keys = list(saved) + [k for k in varying if k not in saved]
    orders = {}
    for key in keys:
        found = sorted({run.overrides.get(key, "-") for run in runs}, key=sort_key)
        orders[key] = [v for v in saved.get(key, []) if v in found] + [v for v in found if v not in saved.get(key, [])]
    return keys, orders


def stats(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one run), min and max; all None without values."""
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


STAT_METRICS = ("best_val_error", "test_error", "best_epoch", "train_seconds")


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
               "unfinished": sum(r.status == "unfinished" for r in members)}
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


def fmt(value, name: str) -> str:
    if value is None:
        return "-"
    if name.endswith("error"):
        return f"{100 * value:.2f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def mean_std(stat: dict, name: str) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{fmt(stat['mean'], name)} ± {fmt(stat['std'], name)}"


def min_max(stat: dict, name: str) -> str:
    return "-" if stat["min"] is None else f"{fmt(stat['min'], name)}–{fmt(stat['max'], name)}"


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the console table and summary.md (errors in %)."""
    keys = summary["keys"]
    header = [*keys, "runs", "val err %", "val range", "test err %", "test range", "best epoch", "train s",
              "failed"]
    metric = summary["metric"]
    extra = metric not in STAT_METRICS
    if extra:
        header.insert(len(keys) + 1, metric)
    unfinished = any(row["unfinished"] for row in summary["points"])
    if unfinished:  # runs still going, or interrupted: finish them with sweep.dir=<this folder>
        header.append("unfinished")
    cells = []
    for row in summary["points"]:
        line = [*row["values"].values(), f"{row['runs_ok']}/{row['runs_total']}",
                mean_std(row["best_val_error"], "best_val_error"), min_max(row["best_val_error"], "best_val_error"),
                mean_std(row["test_error"], "test_error"), min_max(row["test_error"], "test_error"),
                mean_std(row["best_epoch"], "best_epoch"), fmt(row["train_seconds"]["mean"], "train_seconds"),
                str(row["failed"])]
        if extra:
            line.insert(len(keys) + 1, mean_std(row[metric], metric))
        if unfinished:
            line.append(str(row["unfinished"]))
        cells.append(line)
    return header, cells


def rich_table(summary: dict):
    from rich.table import Table

    header, cells = table_rows(summary)
    metric = summary["metric"]
    table = Table(title=f"cnnexp sweep: {summary['sweep_dir']}  (sorted by {metric}; mean ± std over seeds)")
    for name in header:
        table.add_column(name, justify="left" if name in summary["keys"] else "right")
    for line in cells:
        table.add_row(*line)
    return table


def markdown(summary: dict) -> str:
    header, cells = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
    note = (f"Sorted by {summary['metric']}; mean ± sample std over seeds, min–max; errors in %; "
            f"train s = mean training seconds a run; failed counts failed and diverged runs.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def write_summary(sweep_dir: Path, summary: dict) -> None:
    from cnnexp.utils.files import write_json_atomic

    write_json_atomic(summary, sweep_dir / "summary.json")
    (sweep_dir / "summary.md").write_text(markdown(summary))
    columns = [*summary["keys"], "runs_ok", "runs_total", "failed", "unfinished"]
    columns += [f"{m}_{s}" for m in dict.fromkeys((*STAT_METRICS, summary["metric"]))
                for s in ("mean", "std", "min", "max")]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in summary["points"]:
            flat = {**row["values"], **{k: row[k] for k in ("runs_ok", "runs_total", "failed", "unfinished")}}
            flat |= {f"{m}_{s}": row[m][s] for m in dict.fromkeys((*STAT_METRICS, summary["metric"]))
                     for s in ("mean", "std", "min", "max")}
            writer.writerow(flat)


# ---- the plot ----------------------------------------------------------------------------------
def plot_summary(rows: list[dict], keys: list[str], orders: dict, metric: str, path: Path) -> None:
    """One panel per swept key: the metric's mean over seeds against the key's values, the std as
    error bars and min–max as a band; one line per value of the other key when there are two, else
    the mean over the other keys' points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys or ["(all runs)"]
    scale, unit = (100, " %") if metric.endswith("error") else (1, "")
    fig, axes = plt.subplots(1, len(keys), figsize=(max(6, 5 * len(keys)), 4.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        others = [k for k in keys if k != key]
        series_key = others[0] if len(others) == 1 else None
        series = orders[series_key] if series_key else [None]
        x_values = orders.get(key, ["all"])
        for label in series:
            plot_series(ax, rows, key, x_values, series_key, label, metric, scale)
        ax.set_xticks(range(len(x_values)), x_values, rotation=30 if len(x_values) > 6 else 0)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric}{unit}")
        ax.grid(alpha=0.3)
        if series_key:
            ax.legend(title=series_key, fontsize="small")
    fig.suptitle(f"{metric}: mean over seeds; bars: std, band: min–max", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_series(ax, rows, key, x_values, series_key, label, metric, scale) -> None:
    xs, mean, std, low, high = [], [], [], [], []
    for i, value in enumerate(x_values):
        members = [r for r in rows if r["values"].get(key, "all") == value
                   and (series_key is None or r["values"][series_key] == label) and r[metric]["mean"] is not None]
        if not members:
            continue
        xs.append(i)
        mean.append(scale * statistics.fmean(r[metric]["mean"] for r in members))
        std.append(scale * statistics.fmean(r[metric]["std"] for r in members))
        low.append(scale * min(r[metric]["min"] for r in members))
        high.append(scale * max(r[metric]["max"] for r in members))
    if not xs:
        return
    line = ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=label if series_key else None)
    ax.fill_between(xs, low, high, alpha=0.15, color=line[0].get_color())

