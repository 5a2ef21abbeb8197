"""Building the parts of a run, once: a model ready to run and how its inputs are made, from a
checkpoint (eval, predict, serve, viz, features of a run) or from the model registry (features of any
model). `inference.open_run` is the one way commands open a run; it starts here.
"""

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnexp.data import ImageData, create_dataset
from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline
from cnnexp.engine.build import seed_everything, select_device
from cnnexp.engine.precision import Precision, prepare_for_inference
from cnnexp.models import create_model, model_kwargs
from cnnexp.models.weights import LoadReport, start_weights
from cnnexp.utils.checkpoint import Checkpoint
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import load_run_config
from cnnexp.utils.text import listing, preview, shape_text


@dataclass
class InferenceParts:
    """A model ready to run (weights loaded, evaluation mode, on `device`) and how its inputs are made."""

    model: torch.nn.Module
    pipeline: Pipeline  # uint8 images -> model input
    image_shape: tuple  # C, H, W of the uint8 images the pipeline takes
    device: torch.device
    precision: Precision  # the autocast the model's forward runs under (device.precision)

    def parts(self) -> dict:
        """The fields of these parts, to build a richer handle from them."""
        return {f.name: getattr(self, f.name) for f in fields(InferenceParts)}


@dataclass
class Restored(InferenceParts):
    """A trained run opened for inference: its parts, its config and what its checkpoint recorded."""

    config: DictConfig  # the training config, with the caller's dataset overrides applied
    class_names: list
    checkpoint_path: Path
    epoch: int = 0
    step: int = 0
    resize: str = "aspect"  # how user images are brought to `image_shape`

    def load_data(self) -> ImageData:
        """The run's dataset (with overrides), checked against what the model was trained on."""
        cfg = self.config
        data = create_dataset(cfg.dataset, int(cfg.seed)).limit(cfg.dataset.get("limit"))
        if list(data.class_names) != list(self.class_names):
            raise UserError(
                f"the dataset has {data.num_classes} classes ({preview(data.class_names)}) but the model was trained "
                f"on {len(self.class_names)} ({preview(self.class_names)}); use data with the run's classes"
            )
        if tuple(data.image_shape) != tuple(self.image_shape):
            raise UserError(
                f"the dataset's images are {shape_text(data.image_shape)} but the run trained on "
                f"{shape_text(self.image_shape)}; use data of the same size and channels"
            )
        return data


def ready(model: torch.nn.Module, pipeline: Pipeline, image_shape, device_cfg) -> InferenceParts:
    """The model on the configured device, in evaluation mode, under the configured precision."""
    device = select_device(device_cfg)
    model.to(device, memory_format=pipeline.memory_format).eval()
    precision = prepare_for_inference(model, device_cfg, device)
    return InferenceParts(model, pipeline, tuple(int(v) for v in image_shape), device, precision)


def restore_run(run, path: Path, device_cfg, dataset_overrides: dict | None = None) -> Restored:
    """The checkpoint at `path` as a model ready to run, with the run's evaluation pipeline."""
    config, ckpt, model = load_trained(run, path, dataset_overrides)
    pipeline = Pipeline(Augmentation(config.augmentation, tuple(ckpt.image_shape)), Normalizer(**ckpt.normalization),
                        bool(device_cfg.get("channels_last", False)))
    parts = ready(model, pipeline, ckpt.image_shape, device_cfg)
    return Restored(**parts.parts(), config=config, class_names=list(ckpt.class_names), checkpoint_path=path,
                    epoch=int(ckpt.epoch), step=int(ckpt.step))


def load_trained(run, path: Path, dataset_overrides: dict | None = None) -> tuple[DictConfig, Checkpoint, torch.nn.Module]:
    """(config, checkpoint, the model with its weights) of the checkpoint at `path`; the config from the
    run folder's config.yaml when a run is given, else from the checkpoint."""
    ckpt = Checkpoint.read(path)
    config = load_run_config(Path(str(run)).expanduser()) if run is not None else OmegaConf.create(ckpt.config)
    apply_dataset_overrides(config, dataset_overrides or {})
    in_shape = Augmentation(config.augmentation, tuple(ckpt.image_shape)).out_shape
    return config, ckpt, trained_model(config.model, in_shape, ckpt, path)


def apply_dataset_overrides(config: DictConfig, overrides: dict) -> None:
    """`{"root": "../data"}` -> config.dataset.root, adding keys the saved config lacks."""
    with open_dict(config):
        for key, value in overrides.items():
            OmegaConf.update(config, f"dataset.{key}", value, merge=False, force_add=True)


def trained_model(model_cfg, in_shape, ckpt: Checkpoint, path: Path) -> torch.nn.Module:
    """The model the run trained, with the checkpoint's weights (a one-line error when they do not fit)."""
    classes = len(ckpt.class_names)
    model = create_model(model_cfg.name, in_shape, classes, **model_kwargs(model_cfg))
    check_weights(model, ckpt.model, path, f"model {model_cfg.name} for {shape_text(in_shape)} inputs, {classes} classes")
    model.load_state_dict(ckpt.model)
    return model


def registry_model(model_cfg, in_shape, num_classes: int, seed: int) -> tuple[torch.nn.Module, LoadReport | None]:
    """A registry model with `model.weights` loaded as `cnnexp train` loads them (and the report of
    what loaded, None when nothing was); without weights, randomly initialised from `seed`."""
    seed_everything(seed)
    model = create_model(model_cfg.name, in_shape, num_classes, **model_kwargs(model_cfg))
    return model, start_weights(model, model_cfg)


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
