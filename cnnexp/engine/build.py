"""Turning config nodes into the objects a run needs: device, seed, optimizer, scheduler."""

import inspect
import math
import random
from contextlib import contextmanager

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cnnexp.schemas.constructors import ENGINE_KEYS
from cnnexp.utils.errors import UserError


def select_device(device_cfg) -> torch.device:
    kind = device_cfg.type
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
    if kind not in ("cpu", "cuda"):
        raise UserError(f"device.type={kind} is not one of: auto, cpu, cuda")
    return torch.device(kind)


def set_threads(threads: int | None) -> None:
    """Intra-op CPU threads (device.threads; None: torch's default); one per run beats the default when
    parallel runs share a few cores."""
    if threads is not None:
        torch.set_num_threads(threads)


@contextmanager
def threads_kept():
    """The process's intra-op thread count as it was before the block, whatever device.threads a run in it
    set (a notebook's next cell, an in-process sweep's next run)."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(optimizer_cfg, params) -> torch.optim.Optimizer:
    """`params`: parameters or param groups (see models.freeze.parameter_groups)."""
    torch_cfg = OmegaConf.create({k: v for k, v in optimizer_cfg.items() if k not in ENGINE_KEYS["optimizer"]})
    try:
        return instantiate(torch_cfg, _partial_=True)(params)
    except (InstantiationException, TypeError, ValueError) as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"cannot build optimizer {optimizer_cfg._target_}: {cause}; check the optimizer.* keys")


def build_scheduler(scheduler_cfg, optimizer):
    """None for `scheduler=none` (a config whose `_target_` is null) without warm-up. With
    `scheduler.warmup_epochs=W`, the learning rate rises linearly over the first W epochs (from lr/(W+1)
    in the first) before the chosen schedule starts."""
    if scheduler_cfg is None:
        return None
    warmup_epochs = int(scheduler_cfg.warmup_epochs)
    main = _instantiate_scheduler(scheduler_cfg, optimizer)
    if warmup_epochs <= 0:
        return main
    if isinstance(main, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise UserError("scheduler.warmup_epochs does not combine with scheduler=plateau; "
                        "use scheduler.warmup_epochs=0 or another scheduler")
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup_epochs + 1), end_factor=1.0,
                                               total_iters=warmup_epochs)
    if main is None:
        return warmup
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_epochs])


def _instantiate_scheduler(scheduler_cfg, optimizer):
    if scheduler_cfg._target_ is None:
        return None
    torch_cfg = OmegaConf.create({k: v for k, v in scheduler_cfg.items() if k not in ENGINE_KEYS["scheduler"]})
    try:
        scheduler = instantiate(torch_cfg, optimizer=optimizer)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"cannot build scheduler {scheduler_cfg._target_}: {cause}; check the scheduler.* keys")
    check_scheduler_arguments(type(scheduler), OmegaConf.to_container(torch_cfg))
    return scheduler


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The simple annotations of torch's scheduler arguments, and what a value of each must be.
ARGUMENT_KINDS = {
    "int": ("an integer", _is_integer),
    "float": ("a number", lambda value: _is_integer(value) or isinstance(value, float)),
    "Iterable[int]": ("a list of integers, e.g. [30,60]",
                      lambda value: isinstance(value, list) and all(_is_integer(item) for item in value)),
}


def check_scheduler_arguments(cls, arguments: dict) -> None:
    """Torch's schedulers take their arguments unchecked: `milestones=abc` builds a schedule that never
    decays and `gamma=half` fails an epoch into training. Check the simply typed ones before training."""
    parameters = inspect.signature(cls).parameters
    for key, value in arguments.items():
        annotation = parameters[key].annotation if key in parameters else None
        name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
        if name not in ARGUMENT_KINDS:
            continue
        what, accepts = ARGUMENT_KINDS[name]
        if not accepts(value):
            raise UserError(f"scheduler.{key}={value!r} must be {what}")


def to_plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def step_scheduler(scheduler, history: list) -> None:
    """One epoch's step of the learning-rate schedule; a plateau schedule is told the last validation error."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(history[-1]["val_error"] if history else math.inf)
    else:
        scheduler.step()
