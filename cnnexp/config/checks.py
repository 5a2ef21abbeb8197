"""Range checks the schemas' types cannot express, in one place: each failure is one `error:` line."""

from omegaconf import OmegaConf

from cnnexp.utils.errors import UserError

BEST_BY = ("val_error", "val_loss", "val_error_then_loss")  # trainer.best_by: what makes a checkpoint best.pt


def require(cfg, key: str, minimum: float = 1, optional: bool = False, kind=int) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        what = "an integer" if kind is int else "a number"
        raise UserError(f"{key}={value!r} must be {what} >= {minimum}" + (" or null" if optional else ""))


def check_config(cfg) -> None:
    """Reject values of the right type that would otherwise fail deep inside the loop."""
    require(cfg, "seed", 0)
    require(cfg, "trainer.epochs", 1)
    require(cfg, "trainer.batch_size", 1)
    require(cfg, "trainer.eval_batch_size", 1)
    require(cfg, "trainer.eval_every", 1, optional=True)
    require(cfg, "trainer.checkpoint_every", 0)
    require(cfg, "trainer.log_every", 1)
    require(cfg, "trainer.ddp_timeout", 1, kind=float)
    require(cfg, "trainer.grad_clip", 0, optional=True, kind=float)
    require(cfg, "trainer.diverge_loss", 0, kind=float)
    require(cfg, "dataset.limit", 1, optional=True)
    require(cfg, "optimizer.lr", 0, kind=float)
    require(cfg, "optimizer.weight_decay", 0, optional=True, kind=float)
    require(cfg, "device.threads", 1, optional=True)
    require(cfg, "scheduler.warmup_epochs", 0, optional=True)
    below_one(cfg, "trainer.label_smoothing")
    if cfg.trainer.best_by not in BEST_BY:
        raise UserError(f"trainer.best_by={cfg.trainer.best_by} is not one of: {', '.join(BEST_BY)}")
    below_one(cfg, "trainer.ema_decay", optional=True)
    check_precision(cfg)


def below_one(cfg, key: str, optional: bool = False) -> None:
    """A fraction in [0, 1)."""
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
        raise UserError(f"{key}={value!r} must be a number in [0, 1)" + (" or null" if optional else ""))


PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # as cnnexp.engine.precision, without importing torch


def check_precision(cfg) -> None:
    precision = OmegaConf.select(cfg, "device.precision")
    if precision is not None and precision not in PRECISIONS:
        raise UserError(f"device.precision={precision} is not one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and OmegaConf.select(cfg, "device.type") == "cpu":
        raise UserError("device.precision=fp16 needs a CUDA GPU (this run is on cpu); "
                        "use device.precision=bf16 or device.precision=fp32")
