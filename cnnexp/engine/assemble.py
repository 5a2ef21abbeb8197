"""Building the parts of a run, once. A training run's parts (`assemble_training`: device, precision,
model with its starting weights and freezing, pipeline, optimizer, scheduler, weight average, grad
scaler, batches, early stopping) for the trainer to run; a model ready to run and how its inputs are
made, from a checkpoint (eval, predict, serve, viz, features of a run: `restore_run`; `inference.open_run`
is the one way commands open a run) or from the model registry (features of any model).
"""

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnexp.data import ImageData, create_dataset
from cnnexp.data.stream import LazyImages, make_batches
from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline
from cnnexp.engine.build import build_optimizer, build_scheduler, seed_everything, select_device, set_threads
from cnnexp.engine.distributed import Group
from cnnexp.engine.early_stopping import make_early_stopping
from cnnexp.engine.ema import WeightAverage
from cnnexp.engine.evaluation import eval_batch_size
from cnnexp.engine.precision import (Precision, compile_model, prepare_for_inference,
                                     resolve_precision)
from cnnexp.models import create_model, model_kwargs
from cnnexp.models.freeze import FreezeReport, apply_freeze, parameter_groups
from cnnexp.models.weights import LoadReport, choose_normalization, start_weights
from cnnexp.schemas import upgrade
from cnnexp.schemas.datasets import RESIZE, check_source
from cnnexp.schemas.keys import check_dataset_keys
from cnnexp.utils.allocator import bound_to_batch
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
    precision: Precision  # device.precision: the autocast whoever runs the model enters

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
    resize: str = RESIZE  # how user images are brought to `image_shape`

    def load_data(self) -> ImageData:
        """The run's dataset (with overrides), checked against what the model was trained on."""
        cfg = self.config
        data = create_dataset(cfg.dataset, cfg.seed).limit(cfg.dataset.limit)
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
                        device_cfg.channels_last)
    parts = ready(model, pipeline, ckpt.image_shape, device_cfg)
    return Restored(**parts.parts(), config=config, class_names=list(ckpt.class_names), checkpoint_path=path,
                    epoch=int(ckpt.epoch), step=int(ckpt.step))


def load_trained(run, path: Path, dataset_overrides: dict | None = None) -> tuple[DictConfig, Checkpoint, torch.nn.Module]:
    """(config, checkpoint, the model with its weights) of the checkpoint at `path`; the config from the
    run folder's config.yaml when a run is given, else from the checkpoint."""
    ckpt = Checkpoint.read(path)
    config = upgrade(load_run_config(Path(str(run)).expanduser()) if run is not None else ckpt.config)
    apply_dataset_overrides(config, dataset_overrides or {})
    in_shape = Augmentation(config.augmentation, tuple(ckpt.image_shape)).out_shape
    return config, ckpt, trained_model(config.model, in_shape, ckpt, path)


def apply_dataset_overrides(config: DictConfig, overrides: dict) -> None:
    """`{"root": "../data"}` -> config.dataset.root, adding keys the saved config lacks (those its source reads),
    checked against the source's schema as training checked them."""
    if not overrides:
        return
    check_dataset_keys(config.dataset, [key for key in overrides if key.split(".", 1)[0] not in config.dataset])
    with open_dict(config):
        for key, value in overrides.items():
            OmegaConf.update(config, f"dataset.{key}", value, merge=False, force_add=True)
    check_source(config.dataset)


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


# ---- a training run's parts --------------------------------------------------------------------------
@dataclass
class TrainingParts:
    """Everything a training run is made of, built in the order that makes a run reproducible (seed
    first, then the model's initialisation, then the generators of the batch orders and augmentations)."""

    config: DictConfig  # the resolved run config
    data: ImageData  # on `device`
    group: Group  # rank 0 of 1 unless started by torchrun
    device: torch.device
    precision: Precision
    model: torch.nn.Module  # the weights being trained
    train_model: torch.nn.Module  # what a training step calls (the DDP wrapper of `model` in a data-parallel run)
    batchnorm: str | None  # how a data-parallel run treats batch norm, for the run summary
    weights: LoadReport | None  # what loaded from model.weights (None without, or when resuming)
    freezing: FreezeReport
    pipeline: Pipeline  # uint8 images -> model input, with augmentation when training
    ema: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scheduler: object | None  # a torch learning-rate scheduler
    scaler: torch.amp.GradScaler | None
    train_batches: object  # data.stream batches of the training split (this rank's share)
    generator: torch.Generator  # the epochs' orders
    augment_generator: torch.Generator  # the augmentations' draws (this rank's own in a data-parallel run)
    stopper: object  # engine.early_stopping rule
    eval_batch_size: int  # images per evaluation forward pass (given, or sized to trainer.eval_memory_mb)

    @property
    def input_shape(self) -> tuple:
        return self.pipeline.augmentation.out_shape


def assemble_training(cfg, data: ImageData, resuming: bool = False) -> TrainingParts:
    """A training run's parts from its resolved config and dataset; `resuming`: the weights will come
    from the run's checkpoint, so model.weights is not read."""
    group = Group()
    device = select_device(cfg.device)
    precision = resolve_precision(cfg.device, device)
    set_threads(cfg.device.threads)
    seed_everything(cfg.seed)
    data = data.to(device)
    train_split = data.split("train")
    check_batch_size(cfg.trainer.batch_size, len(train_split))
    augmentation = Augmentation(cfg.augmentation, data.image_shape)
    model = create_model(cfg.model.name, augmentation.out_shape, data.num_classes, **model_kwargs(cfg.model))
    weights = None if resuming else start_weights(model, cfg.model)
    freezing = apply_freeze(model, cfg.model.freeze, cfg.model.trainable, cfg.model.name)
    eval_batch = eval_batch_size(cfg.trainer.eval_batch_size, cfg.trainer.eval_memory_mb, model,
                                 data.image_shape, augmentation.out_shape)
    normalizer = choose_normalizer(cfg, weights, augmentation.out_shape[0], train_split, data.meta.get("channel_stats"))
    channels_last = cfg.device.channels_last
    pipeline = Pipeline(augmentation, normalizer, channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    compile_model(model, cfg.device.compile)
    scaler = precision.grad_scaler()
    sync_bn = cfg.trainer.sync_bn
    batchnorm = group.batchnorm_mode(model, device, sync_bn)
    train_model = group.wrap(model, device, sync_bn)
    ema = WeightAverage(model, cfg.trainer.ema_decay) if cfg.trainer.ema_decay else None
    optimizer = build_optimizer(cfg.optimizer, parameter_groups(
        model, cfg.optimizer.head_lr_mult, cfg.optimizer.lr, cfg.optimizer.decay_norm_bias))
    scheduler = build_scheduler(cfg.scheduler, optimizer)
    train_batches = make_batches(train_split, cfg.trainer.batch_size, cfg.trainer.shuffle,
                                 shard=(group.rank, group.world_size))
    if isinstance(train_split.images, LazyImages):
        bound_to_batch()  # streamed: memory follows the batch (utils/allocator.py)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    return TrainingParts(cfg, data, group, device, precision, model, train_model, batchnorm, weights, freezing,
                         pipeline, ema, optimizer, scheduler, scaler, train_batches, generator,
                         augment_generator(generator, group, cfg.seed, device), make_early_stopping(cfg.trainer),
                         eval_batch)


def check_batch_size(batch_size: int, n_train: int) -> None:
    if not 1 <= batch_size <= n_train:
        raise UserError(f"trainer.batch_size={batch_size} does not fit the training split of {n_train} images; "
                        f"use 1 to {n_train}")


def choose_normalizer(cfg, weights: LoadReport | None, channels: int, train_split, stored_stats) -> Normalizer:
    """The starting weights' normalisation (model.preprocess=weights), else dataset.normalize's."""
    stats = choose_normalization(weights, cfg.model, channels)
    if stats is not None:
        return Normalizer(**stats)
    return Normalizer.fit(cfg.dataset.normalize, train_split.images, stored_stats)


def augment_generator(generator: torch.Generator, group: Group, seed: int, device: torch.device) -> torch.Generator:
    """One process draws augmentations and epoch orders from one generator (as always). Data-parallel
    processes share the order's generator but augment their own images with their own generator
    (and dropout masks from their own seed), so no two ranks draw the same random views."""
    if not group.active:
        return generator
    torch.manual_seed(seed + 7919 * group.rank)
    return torch.Generator(device=device).manual_seed(seed + 7919 * group.rank)
