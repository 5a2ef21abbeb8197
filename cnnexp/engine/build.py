"""Turning config nodes into the objects a run needs: device, seed, optimizer, scheduler."""

import random

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

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


def set_threads(device_cfg) -> None:
    """Intra-op CPU threads; one per run beats the default when parallel runs share a few cores."""
    threads = device_cfg.get("threads")
    if threads is not None:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(optimizer_cfg, params) -> torch.optim.Optimizer:
    try:
        return instantiate(optimizer_cfg, params=params)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"cannot build optimizer {optimizer_cfg.get('_target_')}: {cause}; check the optimizer.* keys")


def build_scheduler(scheduler_cfg, optimizer):
    """None for `scheduler=none` (a config whose `_target_` is null)."""
    if scheduler_cfg is None or scheduler_cfg.get("_target_") is None:
        return None
    try:
        return instantiate(scheduler_cfg, optimizer=optimizer)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"cannot build scheduler {scheduler_cfg.get('_target_')}: {cause}; check the scheduler.* keys")


def to_plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
