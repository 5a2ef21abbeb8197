"""Rebuild a trained model from a run folder or a checkpoint file: its config, the model with its
weights, the evaluation pipeline (centre view + the run's normalisation) and the class names.

`eval`, `predict` and `viz` all start here, so the user repeats nothing the run already recorded.
The config comes from the run folder's config.yaml when a run is given, else from the checkpoint;
the weights from `checkpoint=` when given, else from `<run>/checkpoints/<which>.pt`.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnexp.data import ImageData, create_dataset
from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline
from cnnexp.engine.build import select_device
from cnnexp.engine.checkpoint import load_checkpoint
from cnnexp.engine.precision import Precision, prepare_for_inference
from cnnexp.utils.errors import UserError
from cnnexp.models import create_model, model_kwargs
from cnnexp.utils.runs import checkpoint_path, load_run_config

REQUIRED = ("model", "config", "class_names", "normalization", "input_shape", "image_shape")
SHOWN = 3  # differences listed per kind in a mismatch message


@dataclass
class Restored:
    config: DictConfig  # the training config, with the caller's dataset overrides applied
    checkpoint_path: Path
    epoch: int
    step: int
    model: torch.nn.Module  # weights loaded, in evaluation mode, on `device`
    pipeline: Pipeline  # uint8 images -> model input, as the run evaluated
    class_names: list[str]
    image_shape: tuple[int, int, int]  # C, H, W of the training images (before any crop)
    device: torch.device
    precision: Precision  # the autocast the model's forward runs under (device.precision)

    def load_data(self) -> ImageData:
        """The run's dataset (with overrides), checked against what the model was trained on."""
        cfg = self.config
        data = create_dataset(cfg.dataset, int(cfg.seed)).limit(cfg.dataset.get("limit"))
        if list(data.class_names) != list(self.class_names):
            raise UserError(
                f"the dataset has {data.num_classes} classes ({preview(data.class_names)}) but the model was trained "
                f"on {len(self.class_names)} ({preview(self.class_names)}); use data with the run's classes"
            )
        if tuple(data.image_shape) != self.image_shape:
            raise UserError(
                f"the dataset's images are {shape_text(data.image_shape)} but the run trained on "
                f"{shape_text(self.image_shape)}; use data of the same size and channels"
            )
        return data


def restore(run=None, checkpoint=None, which: str = "best", device_cfg=None,
            dataset_overrides: dict | None = None) -> Restored:
    """Everything needed to evaluate or query a trained model; one-line errors for every bad input."""
    path = checkpoint_path(run, checkpoint, which)
    ckpt = load_checkpoint(path)
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; it was not written by cnnexp train")
    config = load_run_config(Path(str(run)).expanduser()) if run is not None else OmegaConf.create(ckpt["config"])
    apply_dataset_overrides(config, dataset_overrides or {})
    device_cfg = device_cfg if device_cfg is not None else OmegaConf.create({"type": "auto"})
    image_shape = tuple(int(v) for v in ckpt["image_shape"])
    pipeline = Pipeline(Augmentation(config.augmentation, image_shape), Normalizer(**ckpt["normalization"]),
                        bool(device_cfg.get("channels_last", False)))
    model = build_model(config, pipeline.augmentation.out_shape, ckpt, path)
    device = select_device(device_cfg)
    model.to(device, memory_format=pipeline.memory_format).eval()
    precision = prepare_for_inference(model, device_cfg, device)
    return Restored(config, path, int(ckpt.get("epoch", 0)), int(ckpt.get("step", 0)), model, pipeline,
                    list(ckpt["class_names"]), image_shape, device, precision)


def apply_dataset_overrides(config: DictConfig, overrides: dict) -> None:
    """`{"root": "../data"}` -> config.dataset.root, adding keys the saved config lacks."""
    with open_dict(config):
        for key, value in overrides.items():
            OmegaConf.update(config, f"dataset.{key}", value, merge=False, force_add=True)


def hydra_dataset_overrides(cfg) -> dict:
    """The `dataset.*` keys given on this command's line (e.g. `dataset.root=...`), with their values."""
    from hydra.core.hydra_config import HydraConfig

    keys = [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]
    return {k.split(".", 1)[1]: OmegaConf.select(cfg, k) for k in keys if k.startswith("dataset.")}


def build_model(config, in_shape, ckpt: dict, path: Path) -> torch.nn.Module:
    model = create_model(config.model.name, in_shape, len(ckpt["class_names"]), **model_kwargs(config.model))
    check_weights(model, ckpt["model"], path, f"model {config.model.name} for {shape_text(in_shape)} inputs, "
                                               f"{len(ckpt['class_names'])} classes")
    model.load_state_dict(ckpt["model"])
    return model


def check_weights(model: torch.nn.Module, weights: dict, path: Path, described: str) -> None:
    """A one-line account of missing, unexpected and differently shaped tensors, if any."""
    wanted = {k: list(v.shape) for k, v in model.state_dict().items()}
    given = {k: list(getattr(v, "shape", [])) for k, v in weights.items()}
    problems = []
    for label, keys in (("missing", sorted(wanted.keys() - given.keys())),
                        ("unexpected", sorted(given.keys() - wanted.keys()))):
        if keys:
            problems.append(f"{label} {listing(keys)}")
    shapes = [f"{k} {given[k]} vs {wanted[k]}" for k in wanted if k in given and given[k] != wanted[k]]
    if shapes:
        problems.append(f"shapes differ (checkpoint vs model): {listing(shapes)}")
    if problems:
        raise UserError(f"{path} does not fit the {described}: {'; '.join(problems)}; "
                        "use the checkpoint with the run that wrote it")


def listing(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def preview(names) -> str:
    names = list(names)
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def shape_text(shape) -> str:
    return "x".join(str(v) for v in shape)
