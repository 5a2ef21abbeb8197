"""What a training run records: its progress (`TrainState`, carried by checkpoints), the loggers that
write history.csv, curves.png and TensorBoard, the best-model rule, and the final numbers."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnexp.engine.build import to_plain
from cnnexp.engine.distributed import Discard
from cnnexp.engine.loggers import CurvesPlot, HistoryCSV, TensorBoardLogger


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry to resume exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    batch_in_epoch: int = 0
    best_val_error: float = math.inf
    best_val_loss: float = math.inf  # of the best checkpoint (trainer.best_by)
    best_epoch: int | None = None
    best_step: int | None = None
    test_error: float | None = None
    train_seconds: float = 0.0
    images_seen: int = 0
    smooth_loss: float | None = None
    interval_loss_sum: float = 0.0  # training loss since the last validation (its history row's train_loss)
    interval_batches: int = 0
    history: list = field(default_factory=list)


@dataclass
class Loggers:
    """history.csv, curves.png and TensorBoard: rank 0's alone (the other ranks' discard everything)."""

    curves: object
    history: object
    tensorboard: object

    @classmethod
    def open(cls, cfg, run_dir: Path, history: list, is_main: bool) -> "Loggers":
        if not is_main:
            return cls(Discard(), Discard(), Discard())
        return cls(CurvesPlot(run_dir / "curves.png", curves_title(cfg, run_dir)),
                   HistoryCSV(run_dir / "history.csv", history), TensorBoardLogger(run_dir))

    def evaluation(self, row: dict, history: list) -> None:
        self.history.append(row)
        self.curves.update(history)
        self.tensorboard.scalars({"val/loss": row["val_loss"], "val/error": row["val_error"],
                                  "test/error": row["test_error"], "lr": row["lr"],
                                  "perf/images_per_second": row["images_per_second"]}, row["step"])

    def input_grid(self, pipeline, images, device) -> None:
        """A grid of augmented training inputs (the same draws every run)."""
        generator = torch.Generator(device=device).manual_seed(0)
        self.tensorboard.image_grid("inputs/train", pipeline.views(images, True, generator))

    def final(self, hparams: dict, metrics: dict) -> None:
        self.tensorboard.hparams(hparams, {k: v for k, v in metrics.items()
                                           if k in ("best_val_error", "test_error", "best_epoch") and v is not None})

    def close(self) -> None:
        self.curves.close()
        try:
            self.tensorboard.close()
        except OSError:  # a full disk: the error that stopped the run is the one to report
            pass


def is_better(state: TrainState, by: str, val_error: float, val_loss: float) -> bool:
    """Whether this validation beats the best checkpoint's, by `trainer.best_by`: the error (ties keep
    the earlier model, as the tutorials), the loss, or the error with ties broken by the loss (on a
    small validation set many epochs tie at the same error; the lower loss is the surer model)."""
    if by == "val_loss":
        return val_loss < state.best_val_loss
    if by == "val_error_then_loss":
        return (val_error, val_loss) < (state.best_val_error, state.best_val_loss)
    return val_error < state.best_val_error


def run_metrics(state: TrainState, parts, stop_reason: str | None, diverged: bool, interrupted: bool) -> dict:
    """metrics.json: the run's final numbers."""
    return {
        "best_val_error": state.best_val_error if math.isfinite(state.best_val_error) else None,
        "best_epoch": state.best_epoch,
        "best_step": state.best_step,
        "test_error": state.test_error,
        "epochs_run": state.epoch,
        "steps": state.step,
        "train_seconds": state.train_seconds,
        "images_per_second": state.images_seen / max(state.train_seconds, 1e-9),
        "params": parts.freezing.total,
        "precision": parts.precision.name,
        "compiled": bool(parts.config.device.compile),
        "trainable_params": parts.freezing.trainable,
        "stopped_early": stop_reason == "early stopping",
        "diverged": diverged,
        "interrupted": interrupted,
    }


def curves_title(cfg, run_dir: Path) -> str:
    return f"{cfg.model.name} on {cfg.dataset.name}, {run_dir.name}"


def hparam_summary(cfg) -> dict:
    """The knobs worth comparing across runs, flattened to `group.key` names."""
    plain = to_plain(cfg)
    flat = {"seed": plain["seed"]}
    for group in ("dataset", "model", "optimizer", "scheduler", "augmentation", "trainer"):
        for key, value in (plain[group] or {}).items():
            if key not in ("root", "resume", "path") and value is not None:
                flat[f"{group}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
