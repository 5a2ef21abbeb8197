"""The schemas of a training run's config (train, sweep, data show): the trainer, device and augmentation
keys typed and range-checked beside their fields; dataset, optimizer and scheduler are free-form groups
(each choice has its own keys, checked by the source or by torch's constructor), whose shared keys
`TrainSchema.check` checks."""

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from cnnexp.schemas.checks import Checked, at_least, fraction, one_of
from cnnexp.utils.errors import UserError

BEST_BY = ("val_error", "val_loss", "val_error_then_loss")  # trainer.best_by: what makes a checkpoint best.pt
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # device.precision (cnnexp.engine.precision reads the same)


@dataclass
class TrainerSchema(Checked):
    epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: Optional[int] = MISSING
    eval_memory_mb: float = MISSING
    shuffle: bool = MISSING
    eval_every: Optional[int] = MISSING
    early_stopping: str = MISSING
    patience: int = MISSING
    patience_iterations: int = MISSING
    patience_increase: float = MISSING
    improvement_threshold: float = MISSING
    grad_clip: Optional[float] = MISSING
    label_smoothing: float = MISSING
    ema_decay: Optional[float] = MISSING
    best_by: str = MISSING
    diverge_loss: float = MISSING
    checkpoint_every: int = MISSING
    resume: Optional[str] = MISSING
    log_every: int = MISSING
    sync_bn: bool = MISSING
    ddp_timeout: float = MISSING

    def check(self) -> None:
        at_least("trainer.epochs", self.epochs, 1)
        at_least("trainer.batch_size", self.batch_size, 1)
        at_least("trainer.eval_batch_size", self.eval_batch_size, 1, optional=True)
        at_least("trainer.eval_memory_mb", self.eval_memory_mb, 1, integer=False)
        at_least("trainer.eval_every", self.eval_every, 1, optional=True)
        at_least("trainer.checkpoint_every", self.checkpoint_every, 0)
        at_least("trainer.log_every", self.log_every, 1)
        at_least("trainer.ddp_timeout", self.ddp_timeout, 1, integer=False)
        at_least("trainer.grad_clip", self.grad_clip, 0, integer=False, optional=True)
        at_least("trainer.diverge_loss", self.diverge_loss, 0, integer=False)
        fraction("trainer.label_smoothing", self.label_smoothing)
        one_of("trainer.best_by", self.best_by, BEST_BY)
        fraction("trainer.ema_decay", self.ema_decay, optional=True)


@dataclass
class DeviceSchema(Checked):
    type: str = MISSING
    channels_last: bool = MISSING
    threads: Optional[int] = MISSING
    precision: str = MISSING
    compile: bool = MISSING

    def check(self) -> None:
        at_least("device.threads", self.threads, 1, optional=True)
        one_of("device.precision", self.precision, PRECISIONS)
        if self.precision == "fp16" and self.type == "cpu":
            raise UserError("device.precision=fp16 needs a CUDA GPU (this run is on cpu); "
                            "use device.precision=bf16 or device.precision=fp32")


@dataclass
class AugmentationSchema:
    name: str = MISSING
    crop_size: Optional[list[int]] = MISSING
    flip: bool = MISSING
    rotation: float = MISSING
    zoom: float = MISSING
    width_shift: float = MISSING
    height_shift: float = MISSING
    shear: float = MISSING
    fill: str = MISSING


@dataclass
class TrainSchema(Checked):
    seed: int = MISSING
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    device: DeviceSchema = field(default_factory=DeviceSchema)
    augmentation: AugmentationSchema = field(default_factory=AugmentationSchema)
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING

    def check(self) -> None:
        """The keys of the free-form groups (each choice of dataset, optimizer, scheduler has its own keys)
        that every choice has."""
        at_least("seed", self.seed, 0)
        at_least("dataset.limit", self.dataset.get("limit"), 1, optional=True)
        at_least("optimizer.lr", self.optimizer["lr"], 0, integer=False)
        at_least("optimizer.weight_decay", self.optimizer.get("weight_decay"), 0, integer=False, optional=True)
        at_least("scheduler.warmup_epochs", self.scheduler["warmup_epochs"], 0)


@dataclass
class DataShowSchema(TrainSchema):
    out: Optional[str] = MISSING
    samples: int = MISSING
    split: str = MISSING


@dataclass
class SweepSettings:
    grid: dict[str, Any] = MISSING
    overrides: list[str] = MISSING
    metric: str = MISSING
    dir: Optional[str] = MISSING


@dataclass
class SweepSchema(TrainSchema):
    seeds: int = MISSING
    search: str = MISSING
    trials: int = MISSING
    sampler: str = MISSING
    pruner: str = MISSING
    startup_trials: int = MISSING
    storage: Optional[str] = MISSING
    study: str = MISSING
    heartbeat: int = MISSING
    trial_retries: int = MISSING
    sweep: SweepSettings = field(default_factory=SweepSettings)
