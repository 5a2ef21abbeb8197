"""`cnnexp.train(*overrides)`: compose the train config from the command line's override strings, build
the dataset and model it names, train, and write a run folder; `cnnexp train` is this under a Hydra app
(`train_config`, with Hydra's run folder and overrides).

torch and the engine are imported inside the functions that train, so that `cnnexp train --help` and
`--cfg job` start without them (tests/test_startup.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from omegaconf import OmegaConf, open_dict
from rich.console import Console

from cnnexp.apis.runs import Run
from cnnexp.schemas import typed, upgrade
from cnnexp.schemas.run import TrainSchema, check_choices_take_their_keys
from cnnexp.utils.errors import ConfigError, UserError
from cnnexp.utils.runs import claim_run_dir, finished_metrics, refuse_used_run_dir, save_config, set_aside
from cnnexp.utils.files import display_path
from cnnexp.utils.text import plural

if TYPE_CHECKING:
    from cnnexp.engine.assemble import TrainingParts

CONFIG_NAME = "train"
OUTPUTS = "outputs/train"  # where a run folder is made when none is given (as `cnnexp train` makes it)
GROUPS = ("dataset", "model", "optimizer", "scheduler", "augmentation", "device", "experiment")
AUTO = "auto"  # trainer.resume=auto: continue this run folder's own last.pt when there is one
LOG = "train.log"  # the run's console output, plain (conf/train.yaml turns Hydra's own log file off)


def train(*overrides: str, run_dir: str | Path | None = None, on_evaluation: Callable | None = None) -> Run:
    """Train one run, as `cnnexp train <overrides>` does, and return it (its folder, metrics, history,
    checkpoints). `overrides`: the command line's strings (`"dataset=olivetti"`, `"trainer.epochs=5"`);
    `run_dir`: the run folder (default: a new `outputs/train/<timestamp>` below the working directory);
    `on_evaluation(row)`: called after each evaluation with its history row. Raises a `cnnexp.errors`
    exception for bad input (ConfigError before anything is written), `Diverged`, or `Interrupted` when
    the kernel or process was interrupted (last.pt is saved; its message says how to resume)."""
    from cnnexp.runner.app import check_composes

    overrides = [str(o) for o in overrides]
    if any(o.lstrip("+~").startswith("hydra") for o in overrides):
        raise ConfigError("hydra.* overrides belong to the command line; give run_dir= for the run folder")
    cfg = check_composes(CONFIG_NAME, overrides)
    folder = Path(run_dir) if run_dir is not None else Path(claim_run_dir(OUTPUTS))
    folder.mkdir(parents=True, exist_ok=True)
    train_config(cfg, folder, overrides, on_evaluation, from_python=True)
    return Run(folder)


def train_config(cfg, run_dir: Path, overrides: list[str], on_evaluation=None, from_python: bool = False) -> dict:
    """Train the composed config `cfg` into `run_dir` (`overrides`: the ones given, which a resumed run
    keeps); its metrics. `on_evaluation(row)`: called after each evaluation (a search reports to its
    pruner there). `from_python`: messages say how to resume with `cnnexp.train(...)`."""
    from cnnexp.data import create_dataset
    from cnnexp.engine.assemble import assemble_training
    from cnnexp.engine.build import threads_kept
    from cnnexp.engine.distributed import Group
    from cnnexp.engine.loggers import ConsoleReporter
    from cnnexp.engine.trainer import Trainer
    from cnnexp.utils.checkpoint import Checkpoint

    main_process = Group().is_main  # under torchrun, rank 0 alone writes and prints
    if cfg.trainer.resume == AUTO and (done := finished_metrics(run_dir)) is not None:
        if main_process:
            print(f"{run_dir} holds a finished run (metrics.json); nothing to continue")
        return done
    source = resume_source(cfg.trainer.resume, run_dir, main_process)
    checkpoint = None
    if source is not None:
        checkpoint = Checkpoint.read(source, "last")
        cfg = resumed_config(checkpoint.config, cfg, overrides)
        check_schedule(checkpoint.config, cfg, overrides)
        check_choices_take_their_keys(typed(cfg))
    data = create_dataset(cfg.dataset, cfg.seed).limit(cfg.dataset.limit)
    if main_process:
        save_config(cfg, run_dir)
    reporter = ConsoleReporter(log=run_dir / LOG) if main_process else ConsoleReporter(Console(quiet=True))
    with threads_kept():
        parts = assemble_training(cfg, data, resuming=checkpoint is not None)
        trainer = Trainer(parts, run_dir, reporter)
        trainer.from_python = from_python
        if checkpoint is not None:
            trainer.load(checkpoint)
            if main_process and Path(source).resolve() != run_dir.resolve():
                carry_best(source, checkpoint, run_dir)
        if on_evaluation is not None:
            trainer.evaluation_hooks.append(on_evaluation)
        reporter.start(run_summary(parts, run_dir, (source, checkpoint) if checkpoint is not None else None))
        return trainer.fit()


def resume_source(resume, run_dir: Path, main_process: bool) -> str | None:
    """The run folder or checkpoint to continue from, or None for a new run. `trainer.resume=auto`: this
    run folder itself when it holds a last.pt (a restarted torchrun worker, a requeued SLURM job, a
    retried search trial), else a new run in it (what a run killed before its first last.pt left is
    set aside). A run folder is otherwise never written into twice."""
    if resume != AUTO:
        refuse_used_run_dir(run_dir)
        return resume
    if (run_dir / "checkpoints" / "last.pt").is_file():
        if main_process:
            print(f"trainer.resume=auto: continuing {run_dir} from its last.pt")
        return str(run_dir)
    if main_process:
        set_aside(run_dir)
    return None


def resumed_config(saved: dict, cfg, overrides: list[str]):
    """The config the checkpoint was trained with, plus the keys this command overrides explicitly
    (e.g. `trainer.epochs=4`). Repeating the run's group choices (`experiment=...`, `model=...`) is
    fine; a group choice that changes the config would not be the same run, so it is refused."""
    base = upgrade(saved)
    groups = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "trainer.resume" or key.startswith("hydra"):
            continue
        if "/" in key or key in GROUPS:
            groups.append(key)
            continue
        with open_dict(base):
            OmegaConf.update(base, key, OmegaConf.select(cfg, key), merge=False)
    with open_dict(base):
        base.trainer.resume = cfg.trainer.resume
        for key in cfg.trainer.keys() - base.trainer.keys():  # keys added to cnnexp after the run was made
            base.trainer[key] = cfg.trainer[key]
    if groups and OmegaConf.to_container(cfg, resolve=True) != OmegaConf.to_container(base, resolve=True):
        raise ConfigError(f"cannot change '{groups[0]}' when resuming; start a new run, or override single keys")
    return OmegaConf.merge(OmegaConf.structured(TrainSchema), base)  # typed as a new run's config


def check_schedule(saved: dict, cfg, overrides: list[str]) -> None:
    """A resumed run continues the scheduler state it saved, so its settings cannot change: refuse a
    change rather than ignore it. A schedule whose length is the run's (cosine, T_max = trainer.epochs)
    is refused a new trainer.epochs too, unless scheduler.T_max is given to say the old length is meant.
    Schedules counted in epochs from the start (step, multistep, plateau) continue correctly."""
    old = saved.get("scheduler") or {}
    new = OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") is not None else {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise ConfigError(f"scheduler.{key}={new.get(key)} differs from the resumed run's {old.get(key)}; a resumed "
                            f"run keeps its schedule: start a new run to change it")
    old_epochs, epochs = saved["trainer"]["epochs"], cfg.trainer.epochs
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    if (str(old.get("_target_")).endswith("CosineAnnealingLR") and old.get("T_max") == old_epochs != epochs
            and "scheduler.T_max" not in given):
        raise ConfigError(f"the run's cosine schedule spans its {plural(old_epochs, 'epoch')} (scheduler.T_max={old_epochs}); "
                        f"resuming with trainer.epochs={epochs} cannot stretch it. Start a new run with "
                        f"trainer.epochs={epochs}, or add +scheduler.T_max={old_epochs} to continue the old schedule "
                        f"as it is (torch's cosine rises again after T_max)")


def carry_best(resumed, checkpoint, run_dir: Path) -> None:
    """Copy the resumed run folder's best.pt into the new run when it is the best model of the state
    resumed (not one written after that last.pt): a run resumed after its best epoch keeps its best.pt."""
    from cnnexp.utils.checkpoint import Checkpoint

    best_path = Path(str(resumed)).expanduser() / "checkpoints" / "best.pt"
    if not best_path.is_file():
        return
    try:
        best = Checkpoint.read(best_path)
    except UserError as exc:
        print(f"warning: best.pt not carried over: {exc}")
        return
    if best.step == checkpoint.best_step and best.step <= checkpoint.step:
        best.write(run_dir / "checkpoints" / "best.pt")


def epochs_line(epochs: int, resumed=None) -> str:
    """`20 epochs` for a new run; a resumed one counts the epochs left: `epochs 21-22 of 22`."""
    if resumed is None:
        return plural(epochs, "epoch")
    first = resumed.epoch + 1
    return f"epoch {epochs} of {epochs}" if first == epochs else f"epochs {first}-{epochs} of {epochs}"


def run_summary(parts: TrainingParts, run_dir, resumed: tuple | None = None) -> dict:
    """The header of a run; `resumed`: (the run folder or checkpoint given, its checkpoint) of a resumed run."""
    cfg, data = parts.config, parts.data
    sizes = "/".join(f"{len(data.splits[s])}" for s in ("train", "val", "test"))
    shape = "x".join(map(str, parts.input_shape))
    optimizer = cfg.optimizer._target_.rsplit(".", 1)[-1]
    summary = {
        "dataset": f"{cfg.dataset.name}  train/val/test {sizes}  input {shape}  {data.num_classes} classes",
        "model": f"{cfg.model.name}  {parts.freezing.summary()}",
        "optimizer": f"{optimizer}  lr {cfg.optimizer.lr}  weight decay {cfg.optimizer.weight_decay}",
        "scheduler": schedule_line(cfg.scheduler),
        "augmentation": parts.pipeline.augmentation.describe(),
        "trainer": f"{epochs_line(cfg.trainer.epochs, resumed and resumed[1])}  batch {cfg.trainer.batch_size}  shuffle {cfg.trainer.shuffle}  "
                   f"early stopping {cfg.trainer.early_stopping}{regularisers_line(cfg.trainer)}",
        "device": f"{parts.device}  precision {parts.precision.describe()}  "
                  f"compile {cfg.device.compile}  seed {cfg.seed}",
        "memory": memory_line(parts),
        "run folder": display_path(run_dir),
    }
    if resumed is not None:
        source, checkpoint = resumed
        summary["resumed from"] = (f"{source} (after epoch {checkpoint.epoch}, step {checkpoint.step}"
                                   f"{', mid-epoch' if (checkpoint.train_state or {}).get('batch_in_epoch') else ''})")
    group = parts.group
    if group.active:
        global_batch = cfg.trainer.batch_size
        per_rank = global_batch // group.world_size
        shares = f"{per_rank}" if global_batch % group.world_size == 0 else f"{per_rank}-{per_rank + 1}"
        summary["processes"] = (f"{group.world_size} (DDP, {'NCCL' if parts.device.type == 'cuda' else 'Gloo'}): "
                                f"global batch {global_batch} = {shares} images per process")
        if parts.batchnorm:
            summary["batchnorm"] = parts.batchnorm
    if parts.weights is not None:
        summary["weights"] = weights_line(parts.weights, parts)
    return summary


def memory_line(parts: TrainingParts) -> str:
    """The evaluation batch (set by the user, or sized to the budget); the decoded images' size and
    whether they are held in memory or streamed from their files."""
    from cnnexp.data.stream import LazyImages

    trainer_cfg, splits = parts.config.trainer, parts.data.splits.values()
    source = "set" if trainer_cfg.eval_batch_size is not None else f"budget {trainer_cfg.eval_memory_mb:g} MB"
    streamed = any(isinstance(split.images, LazyImages) for split in splits)
    decoded = sum(split.images.numel() for split in splits)
    held = "streamed" if streamed else "in memory"
    return f"eval batch {parts.eval_batch_size} ({source})  images {megabytes(decoded)} {held}"


def megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GB" if n_bytes >= 2**30 else f"{max(1, round(n_bytes / 2**20))} MB"


def schedule_line(scheduler) -> str:
    target, warmup = scheduler._target_, scheduler.warmup_epochs
    name = target.rsplit(".", 1)[-1] if target else "constant lr"
    return name + (f" after {warmup} warm-up epoch{'s' * (warmup != 1)}" if warmup else "")


def regularisers_line(trainer_cfg) -> str:
    """The training knobs that change the loss or the kept weights, only where they are on; the best
    model's rule only when it is not the validation error (a tie broken by the loss or not: the line
    stays within 80 columns)."""
    parts = [f"label smoothing {trainer_cfg.label_smoothing:g}"] if trainer_cfg.label_smoothing else []
    parts += [f"EMA {trainer_cfg.ema_decay:g}"] if trainer_cfg.ema_decay else []
    parts += [f"best by {trainer_cfg.best_by}"] if not trainer_cfg.best_by.startswith("val_error") else []
    return "".join(f"  {part}" for part in parts)


def weights_line(report, parts: TrainingParts) -> str:
    """Where the starting weights came from, what loaded, and the preprocessing the run uses."""
    normalizer = parts.pipeline.normalizer
    line = f"{report.summary()}; normalize {normalizer.mode}"
    if normalizer.mode in ("mean", "standardize"):
        line += f" mean {[round(m, 2) for m in normalizer.mean]}"
    if report.input_size and list(report.input_size) != list(parts.input_shape[1:]):
        line += f"; the weights were trained at {'x'.join(map(str, report.input_size))}"
    return line
