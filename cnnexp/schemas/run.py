"""The schemas of a training run's config (train, sweep, data show): the trainer, device and augmentation
keys typed and range-checked beside their fields; each dataset source has its own schema
(schemas/datasets.py); optimizer and scheduler are free-form groups (each choice has its own keys, passed
to torch's constructor), whose shared keys `TrainSchema.check` checks."""

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from cnnexp.schemas.checks import Checked, at_least, fraction, is_number, one_of
from cnnexp.schemas.constructors import check_constructor_keys
from cnnexp.utils.errors import UserError

BEST_BY = ("val_error", "val_loss", "val_error_then_loss")  # trainer.best_by: what makes a checkpoint best.pt
EARLY_STOPPING = ("none", "epochs", "tutorial")  # trainer.early_stopping (cnnexp.engine.early_stopping's rules)
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
        one_of("trainer.early_stopping", self.early_stopping, EARLY_STOPPING)
        at_least("trainer.patience", self.patience, 1)
        at_least("trainer.patience_iterations", self.patience_iterations, 0)
        at_least("trainer.patience_increase", self.patience_increase, 1, integer=False)
        at_least("trainer.improvement_threshold", self.improvement_threshold, 0, integer=False)
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


FILLS = ("nearest", "constant", "reflect")  # augmentation.fill, Keras's fill_mode names (data/transforms.py maps them)


@dataclass
class AugmentationSchema(Checked):
    """The augmentation keys, each defaulting to no augmentation: what a config that lacks a key (a run
    saved before the key existed, a features file, a model's features without augmentation) gets.
    conf/augmentation/none.yaml writes the same values with their comments (a test holds them equal)."""
    name: str = "none"
    crop_size: Optional[list[int]] = None
    flip: bool = False
    rotation: float = 0.0
    zoom: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    shear: float = 0.0
    fill: str = "nearest"

    def check(self) -> None:
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) < 1):
            raise UserError(f"augmentation.crop_size={self.crop_size} must be [height, width] of positive integers "
                            "or null")
        for key in ("rotation", "width_shift", "height_shift", "shear"):
            at_least(f"augmentation.{key}", getattr(self, key), 0, integer=False)
        fraction("augmentation.zoom", self.zoom)
        one_of("augmentation.fill", self.fill, FILLS)


def check_fraction_list(key: str, value) -> None:
    """Adam's betas: two numbers in [0, 1)."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(v) and 0 <= v < 1 for v in value)):
        raise UserError(f"{key}={value} must be two numbers in [0, 1), e.g. [0.9, 0.999]")


def check_flag(key: str, value) -> None:
    if not isinstance(value, bool):
        raise UserError(f"{key}={value!r} must be true or false")


# What the optimizer keys that torch's optimizers share must be, checked before any data is read (any other
# constructor argument is left to the constructor).
OPTIMIZER_CHECKS = {
    "lr": lambda key, value: at_least(key, value, 0, integer=False),
    "weight_decay": lambda key, value: at_least(key, value, 0, integer=False),
    "head_lr_mult": lambda key, value: at_least(key, value, 0, integer=False),
    "decay_norm_bias": check_flag,
    "nesterov": check_flag,
    "momentum": lambda key, value: at_least(key, value, 0, integer=False),
    "eps": lambda key, value: at_least(key, value, 0, integer=False),
    "rho": lambda key, value: fraction(key, value),
    "betas": check_fraction_list,
}


def check_model(model) -> None:
    """The keys every model takes (`cnnexp.models.COMMON_MODEL_KEYS`) that have a range."""
    from cnnexp.models import PREPROCESSES

    preprocess = model["preprocess"] if isinstance(model, dict) else model.preprocess  # a saved run's: a dict
    one_of("model.preprocess", preprocess, PREPROCESSES)


def check_optimizer(optimizer) -> None:
    for key, value in optimizer.items():
        if key in OPTIMIZER_CHECKS:
            OPTIMIZER_CHECKS[key](f"optimizer.{key}", value)


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
        if self.trainer.resume in (None, "auto"):  # a resumed run's keys are checked once merged with its own config
            check_choices_take_their_keys(self)
        check_optimizer(self.optimizer)
        check_model(self.model)
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


def check_choices_take_their_keys(cfg) -> None:
    """Every optimizer and scheduler key is one its chosen class (or the engine) takes. A resumed run's
    command line composes over the default choices, so its keys are checked against the run's own
    (apis.training.train_config), not here."""
    check_constructor_keys("optimizer", cfg.optimizer)
    check_constructor_keys("scheduler", cfg.scheduler)
