"""`cnnexp sweep search=optuna`: an Optuna study instead of a grid, over a space written in Hydra's
override grammar (as Hydra's Optuna sweeper reads it):

    optimizer.lr='tag(log,interval(1e-4,1e-1))'    a float, log-uniform (tag(int,...) for integers)
    trainer.batch_size='range(10,50,step=10)'      10, 20, 30 or 40, as an ordered integer
    model.nkerns='choice([20,50],[10,30])'         one of the values (as is `a,b,c`)

Each trial is an ordinary train run folder `trial-NNNN` in the sweep folder, made by the same Hydra
job as a grid run, so the summary table, files and plots are the grid's; the study (a journal file in
the sweep folder, or the database `storage=` names: see sweep/study.py) is what workers on other
machines join, and a re-run of the command continues it. `trials=N` is the study's size: every worker
runs trials until the study has N finished ones. Each evaluation reports the validation error to the pruner,
which stops hopeless trials (marked pruned in metrics.json and the summary, not failed). Optuna is
used directly (the Hydra Optuna sweeper plugin pins Optuna < 3) and imported only here.
"""

import importlib
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

from omegaconf import open_dict

from cnnexp.sweeps.folders import read_json
from cnnexp.sweeps.plan import parse_overrides
from cnnexp.utils.errors import Pruned, UserError
from cnnexp.utils.files import write_json_atomic

OBJECTIVE = "best_val_error"  # what the study minimises: the test split stays out of the choice
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


def split_space(train_args: list[str]) -> tuple[list[str], dict]:
    """Fixed train overrides, and {key: Optuna distribution} for every swept one."""
    fixed, space = [], {}
    for override in parse_overrides(train_args):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    if not space:
        raise UserError("search=optuna needs a search space, e.g. optimizer.lr='tag(log,interval(1e-4,1e-1))' "
                        "trainer.batch_size='range(10,50,step=10)' model.nkerns='choice([20,50],[10,30])'")
    return fixed, space


def distribution(override):
    """The Optuna distribution of one override: interval -> float (int with tag int, log with tag log),
    range -> stepped int (float when a bound or the step is), choice and a,b,c -> categorical."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value, key = override.value(), override.get_key_element()
    log = "log" in (value.tags or set())
    if isinstance(value, IntervalSweep):
        if not value.start < value.end or (log and value.start <= 0):
            raise UserError(f"{key}: interval({value.start:g},{value.end:g}) needs start < end (and start > 0 "
                            f"with tag log)")
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep):
        count = len(list(override.sweep_iterator()))
        if count == 0:
            raise UserError(f"{key}: '{override.input_line}' holds no values")
        last = value.start + value.step * (count - 1)
        if all(isinstance(v, int) for v in (value.start, value.step)):
            return IntDistribution(value.start, last, step=value.step)
        return FloatDistribution(float(value.start), float(last), step=float(value.step))
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_string_iterator()))
    raise UserError(f"'{override.input_line}': search=optuna reads interval(), range(), choice() and a,b,c")


def override_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def sampler_and_pruner(settings):
    import optuna

    startup = settings.startup_trials
    sampler = optuna.samplers.TPESampler(n_startup_trials=startup) if settings.sampler == "tpe" \
        else optuna.samplers.RandomSampler()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup) if settings.pruner == "median" \
        else optuna.pruners.NopPruner()
    return sampler, pruner


def check_settings(settings) -> None:
    if settings.sampler not in SAMPLERS:
        raise UserError(f"sampler={settings.sampler} is not one of: {', '.join(SAMPLERS)}")
    if settings.pruner not in PRUNERS:
        raise UserError(f"pruner={settings.pruner} is not one of: {', '.join(PRUNERS)}")
    for key, least in (("trials", 1), ("startup_trials", 0), ("heartbeat", 1), ("trial_retries", 0)):
        value = settings[key]
        if not isinstance(value, int) or value < least:
            raise UserError(f"{key}={value!r} must be an integer >= {least}")
    if settings.seeds != 1:
        raise UserError("search=optuna trains one seed per trial; leave out seeds= (or give seed=N)")


def prepare(settings, train_args: list[str]) -> tuple[list[str], dict]:
    """Check the search settings and the space before anything is written: (fixed overrides, space).
    The train config is composed with each categorical value and each bound once, so a typo is one line."""
    from cnnexp.runner.app import check_composes

    check_settings(settings)
    try:  # an optional dependency: say how to get it before anything is written
        optuna = importlib.import_module("optuna")
    except ImportError as exc:
        raise UserError("search=optuna needs Optuna: pip install 'cnnexp[search]' (or pip install optuna)") from exc
    if not hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        raise UserError(f"search=optuna needs Optuna 4.9 or newer (this is {optuna.__version__}): "
                        f"pip install -U 'cnnexp[search]'")
    from cnnexp.sweeps.study import check_storage

    check_storage(settings.storage)
    fixed, space = split_space(train_args)
    first = {key: sample_values(dist)[0] for key, dist in space.items()}
    variants = [first] + [{**first, key: v} for key, dist in space.items() for v in sample_values(dist)[1:]]
    for point in variants:
        seed = [] if any(o.split("=", 1)[0] == "seed" for o in fixed) else ["seed=0"]
        check_composes("train", [*fixed, *(f"{k}={override_text(v)}" for k, v in point.items()), *seed])
    return fixed, space


def sample_values(dist) -> list:
    """The values a check composes: every choice, or both bounds."""
    return list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]


def run_search(settings, fixed: list[str], space: dict, hydra_args: list[str], sweep_dir: Path, train_run,
               tuned: bool = True) -> int:
    """Run trials of the study (joined or continued) until it has `trials` finished ones, then its plots;
    returns how many this worker ran."""
    from cnnexp.sweeps.study import Heartbeat, counted, next_trial, open_study, storage_url

    study, lock, storage = open_study(settings, sweep_dir, *sampler_and_pruner(settings))
    target = settings.trials
    write_json_atomic({"grid": {key: [] for key in space}, "seeds": [], "overrides": fixed, "metric": settings.sweep.metric,
                       "search": {"kind": "optuna", "study": settings.study, "objective": OBJECTIVE,
                                  "sampler": settings.sampler, "pruner": settings.pruner, "trials": target}},
                      sweep_dir / "sweep.json")
    print(f"search: Optuna study '{settings.study}' ({settings.sampler} sampler, {settings.pruner} pruner) over "
          f"{', '.join(space)} in {storage_url(settings, sweep_dir)}; {counted(study)} of {target} trials done or "
          f"running; this worker runs trials until the study has {target}, in {sweep_dir}", flush=True)
    objective, ran = Objective(fixed, space, sweep_dir, hydra_args, train_run, tuned), 0
    while (trial := next_trial(study, lock, target, poll=min(settings.heartbeat, 5.0))) is not None:
        with Heartbeat(storage, trial._trial_id):
            outcome = run_guarded(objective, study, trial, storage)
        finish(study, trial, *outcome)
        ran += 1
    save_plots(study, sweep_dir)
    report(study)
    return ran


def run_guarded(objective, study, trial, storage) -> tuple:
    """The objective's (state, value or reason); a trial this process could not finish (Ctrl-C, a crash
    outside the run) is marked failed without holding its place, so another trial takes it."""
    from optuna.trial import TrialState

    try:
        return objective(trial, storage.get_trial(trial._trial_id).system_attrs)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise


def finish(study, trial, state, result) -> None:
    """Tell the study how the trial ended (a failed run keeps its place: it is an answer, not a loss)."""
    import optuna
    from optuna.trial import TrialState

    from cnnexp.sweeps.study import RUN_FAILED

    try:
        if state == TrialState.FAIL:
            trial.set_user_attr(RUN_FAILED, str(result))
            print(f"trial {trial.number} failed: {result}")
        study.tell(trial, result if state == TrialState.COMPLETE else None, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        print(f"trial {trial.number} had been taken for dead by another worker (its heartbeat stopped); "
              f"its retry counts instead")


class Objective:
    """One trial: its parameters from the study, a train run in `trial-NNNN` reporting each validation
    error to the pruner; (COMPLETE, the run's best validation error), (PRUNED, None) or (FAIL, why).
    A retry of a trial whose worker died runs in that trial's folder and continues from its last.pt."""

    def __init__(self, fixed, space, sweep_dir: Path, hydra_args, train_run, tuned: bool):
        self.fixed, self.space, self.sweep_dir, self.hydra_args = fixed, space, sweep_dir, hydra_args
        self.train_run = train_run  # the train command's run(cfg, on_evaluation)
        self.tuned = tuned  # whether the jobs apply the command line's process-wide tunings

    def __call__(self, trial, system_attrs: dict) -> tuple:
        from optuna.trial import TrialState

        from cnnexp.runner.app import launch
        from cnnexp.sweeps.multirun import OFF as SUMMARY_OFF

        params = {key: suggest(trial, key, dist) for key, dist in self.space.items()}
        folder = self.sweep_dir / f"trial-{system_attrs.get('failed_trial', trial.number):04d}"
        overrides = [*self.fixed, *(f"{key}={override_text(v)}" for key, v in params.items())]
        if not any(o.split("=", 1)[0] == "seed" for o in overrides):
            overrides.append("seed=0")
        job = SimpleNamespace(CONFIG_NAME="train", run=lambda cfg: run_trial(cfg, trial, self.train_run),
                              TUNED=self.tuned)
        launch("sweep", job, ["--multirun", *overrides, f"hydra.sweep.dir='{self.sweep_dir}'",
                              f"hydra.sweep.subdir={folder.name}", SUMMARY_OFF, *self.hydra_args])
        metrics, failed = read_json(folder / "metrics.json"), read_json(folder / "failed.json")
        if isinstance(metrics, dict) and metrics.get("pruned"):
            return TrialState.PRUNED, None
        if failed is not None or not isinstance(metrics, dict) or metrics.get(OBJECTIVE) is None:
            return TrialState.FAIL, f"{folder.name}: {failed.get('error') if isinstance(failed, dict) else 'no result'}"
        return TrialState.COMPLETE, float(metrics[OBJECTIVE])


def suggest(trial, key: str, dist):
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def run_trial(cfg, trial, train_run):
    """The train job of a trial (continuing its folder's last.pt when there is one: a retried trial);
    a pruned run ends normally (its metrics.json says pruned)."""
    with open_dict(cfg):
        cfg.trainer.resume = "auto"

    def report(row: dict) -> None:
        trial.report(row["val_error"], row["step"])
        if trial.should_prune():
            raise Pruned(f"pruned by the study at step {row['step']} (val error {100 * row['val_error']:.2f} %)")

    try:
        return train_run(cfg, on_evaluation=report)
    except Pruned as exc:
        print(exc)
        return None


def save_plots(study, sweep_dir: Path) -> None:
    """optuna_history.png and optuna_importance.png (Optuna's matplotlib plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    plots = {"optuna_history.png": optuna_plots.plot_optimization_history,
             "optuna_importance.png": optuna_plots.plot_param_importances}
    complete = sum(t.state.name == "COMPLETE" for t in study.trials)
    for name, plot in plots.items():
        if name == "optuna_importance.png" and complete < 2:
            print(f"{name} not drawn: parameter importance needs 2 complete trials ({complete} so far)")
            continue
        try:
            axes = plot(study, target_name=OBJECTIVE)
        except (ValueError, RuntimeError) as exc:  # importance needs two finished trials
            print(f"{name} not drawn: {str(exc).splitlines()[0]}")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(sweep_dir / name, dpi=100)
        plt.close(figure)
        print(f"wrote {sweep_dir / name}")


def report(study) -> None:
    from optuna.trial import TrialState

    counts = {state.name.lower(): sum(t.state == state for t in study.trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    print("study: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n))
    try:
        best = study.best_trial
    except ValueError:
        return
    value = best.value if best.value is not None and math.isfinite(best.value) else float("nan")
    print(f"best trial {best.number}: {OBJECTIVE} {100 * value:.2f} % with "
          + " ".join(f"{k}={override_text(v)}" for k, v in best.params.items()))
