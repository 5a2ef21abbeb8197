"""Features of every image of a dataset's splits, from a trained run or from any registry model.

A run brings its own preprocessing: `inference.open_run` rebuilds the model, the centre view and the
normalisation it trained with. A registry model (`model=<name>`, with whatever weights its factory
loads) sees the dataset's normalisation, or `mean=`/`std=` given in torchvision's 0..1 units. Either
way the images come from the dataset registry, streamed batch by batch when the dataset does not fit
in memory, and the features go to the file in buffered blocks (`store.FeatureWriter`).

The file's attributes describe the source completely, so `source_from_attrs` rebuilds the same
extractor later (`cnnexp predict` on a probe run).
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from cnnexp.data import create_dataset
from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline, ten_crops
from cnnexp.engine.assemble import InferenceParts, Restored, load_trained, ready, registry_model
from cnnexp.features.layers import FeatureExtractor, LayerChoice
from cnnexp.features.store import FeatureWriter
from cnnexp.models import model_kwargs
from cnnexp.models.weights import choose_normalization
from cnnexp.schemas import AugmentationSchema
from cnnexp.utils.errors import UserError
from cnnexp.utils.text import shape_text


@dataclass
class Source(InferenceParts):
    """A network's parts, the dataset its features come from and the record naming it in the file."""

    dataset_cfg: DictConfig | None = None
    record: dict = field(default_factory=dict)  # file attributes naming the source


def source_from_run(restored: Restored, dataset_cfg, run) -> Source:
    """A trained run (or checkpoint) opened by `inference.open_run`: its model, its evaluation pipeline;
    its dataset unless a dataset group was chosen on the command line (features of another set)."""
    dataset_cfg = dataset_cfg if dataset_cfg.get("name") else restored.config.dataset
    record = {"model": restored.config.model.name, "model_config": model_kwargs(restored.config.model),
              "weights": str(restored.checkpoint_path.resolve()),
              "source_run": "" if run is None else str(Path(str(run)).expanduser().resolve()),
              "checkpoint": str(restored.checkpoint_path.resolve()), "epoch": restored.epoch,
              "augmentation": OmegaConf.to_container(restored.config.augmentation, resolve=True)}
    return Source(**restored.parts(), dataset_cfg=dataset_cfg, record=record)


def source_from_model(cfg, data) -> Source:
    """A registry model sized for the data's images and classes, with `model.weights` loaded as
    `cnnexp train` loads them. Without weights the model is randomly initialised from `seed`, which
    makes the same features again."""
    image_shape = tuple(data.image_shape)
    model_cfg = absolute_weights(OmegaConf.to_container(cfg.model, resolve=True))
    model, loaded = registry_model(OmegaConf.create(model_cfg), image_shape, data.num_classes, cfg.seed)
    weights_stats = choose_normalization(loaded, OmegaConf.create(model_cfg), image_shape[0])
    pipeline = Pipeline(Augmentation(AugmentationSchema(), image_shape), model_normalizer(cfg, data, weights_stats),
                        cfg.device.channels_last)
    record = {"model": model_cfg["name"], "model_config": model_cfg,
              "weights": str(model_cfg["weights"] or "none (random initialisation from seed)"),
              "weights_loaded": loaded.summary() if loaded is not None else "",
              "source_run": "", "checkpoint": "", "seed": cfg.seed, "augmentation": {}}
    return Source(**ready(model, pipeline, image_shape, cfg.device).parts(), dataset_cfg=cfg.dataset, record=record)


def absolute_weights(model_cfg: dict) -> dict:
    """A `model.weights` file or run folder by its absolute path, so a probe run finds it from anywhere."""
    weights = model_cfg["weights"]
    if isinstance(weights, str) and weights and Path(weights).expanduser().exists():
        model_cfg = {**model_cfg, "weights": str(Path(weights).expanduser().resolve())}
    return model_cfg


def model_normalizer(cfg, data, weights_stats: dict | None) -> Normalizer:
    """mean=/std= in 0..1 units (torchvision's), else the weights' own normalisation, else the dataset's."""
    if cfg.mean is None and cfg.std is None:
        if weights_stats is not None:
            return Normalizer(**weights_stats)
        return Normalizer.fit(cfg.dataset.normalize, data.split("train").images, data.meta.get("channel_stats"))
    channels = data.image_shape[0]
    mean, std = (list(cfg.mean or [0.0] * channels)), (list(cfg.std or [1.0] * channels))
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise UserError(f"mean={mean} and std={std} must list {channels} values (one per channel), std > 0")
    return Normalizer("standardize", [255 * m for m in mean], [255 * s for s in std])


def load_dataset(dataset_cfg, seed: int, image_shape=None):
    """The dataset, checked against the image size a run's model takes (when one is given)."""
    data = create_dataset(dataset_cfg, seed).limit(dataset_cfg.get("limit"))
    if image_shape is not None and tuple(data.image_shape) != tuple(image_shape):
        raise UserError(f"the dataset's images are {shape_text(data.image_shape)} but the run's model takes "
                        f"{shape_text(image_shape)}; bring them to that size (e.g. +dataset.size=[H,W] for a folder)")
    return data


def dataset_record(dataset_cfg, data) -> dict:
    cfg = OmegaConf.to_container(dataset_cfg, resolve=True) if isinstance(dataset_cfg, DictConfig) else dataset_cfg
    return {"dataset": cfg.get("name", ""), "dataset_config": cfg, "dataset_source": str(data.meta.get("source", ""))}


class RateColumn(ProgressColumn):
    """Images per second: rich's recent speed, or the mean over the task (a split of one batch)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed and task.completed:
            speed = task.completed / task.elapsed
        return Text(f"{speed:,.0f} img/s" if speed else "- img/s")


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=False)


@torch.inference_mode()
def features_of(extractor: FeatureExtractor, pipeline: Pipeline, images: torch.Tensor, tencrop: dict | None):
    """N x D features of uint8 images: the centre view, or the mean over the ten (five) crops."""
    if tencrop is None:
        return extractor(pipeline(images, train=False))
    views = ten_crops(images.float(), pipeline.augmentation.crop_size, tencrop["mirror"])
    total = sum(extractor(pipeline.normalizer(v).contiguous(memory_format=pipeline.memory_format)) for v in views)
    return total / len(views)


@dataclass
class Extraction:
    counts: dict  # split -> images
    seconds: float


def extract(source: Source, data, splits: list[str], writer_args: dict, layer: LayerChoice, batch_size: int,
            tencrop: dict | None) -> Extraction:
    """Write every chosen split to the file (atomically); returns counts and timing."""
    extractor = FeatureExtractor(source.model, layer)
    writer = FeatureWriter(**writer_args)
    counts, start = {}, time.perf_counter()
    try:
        with progress_bar() as progress:
            for name in splits:
                split = data.split(name)
                counts[name] = write_split(writer, extractor, source, split, name, batch_size, tencrop, progress)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return Extraction(counts, time.perf_counter() - start)


def write_split(writer, extractor, source: Source, split, name: str, batch_size: int, tencrop, progress) -> int:
    n = len(split)
    writer.begin_split(name, n, extractor.choice.dim)
    labels = split.labels.cpu().numpy()
    task = progress.add_task(f"{name:<5}", total=n)
    done = 0
    for chunk in split.images.split(batch_size):
        with source.precision.autocast():
            features = features_of(extractor, source.pipeline, chunk.to(source.device), tencrop)
        if features.shape[1] != extractor.choice.dim:
            raise UserError(f"the layer gave {features.shape[1]} values an image for these images, not the "
                            f"{extractor.choice.dim} it gave for {shape_text(source.image_shape)}; use images of one size")
        writer.append(features.cpu().numpy(), labels[done : done + len(features)])
        done += len(features)
        progress.advance(task, len(features))
    writer.end_split()
    return n


def file_attrs(source: Source, data, layer: LayerChoice, in_shape, tencrop: dict | None) -> dict:
    """Everything that says where the features came from and how to make them again."""
    normalizer = source.pipeline.normalizer
    return {**source.record, **dataset_record(source.dataset_cfg, data), "label_names": list(data.class_names),
            "layer": layer.name, "layer_take": layer.take, "layer_pool": layer.pool or "",
            "layer_description": layer.describe(), "feature_dim": layer.dim,
            "image_size": list(source.image_shape), "input_size": list(in_shape),
            "normalize": normalizer.mode, "mean": list(normalizer.mean), "std": list(normalizer.std),
            "mean_std_units": "0..255", "channels_last": source.pipeline.memory_format == torch.channels_last,
            "tencrop": tencrop is not None, "tencrop_mirror": bool(tencrop and tencrop["mirror"]),
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}


# ---- rebuilding the extractor from a file's attributes (predict on a probe run) --------------------
def parsed(value) -> dict:
    """A dict attribute, stored as JSON text ("" for none)."""
    return json.loads(value) if isinstance(value, str) and value else dict(value or {})


def source_from_attrs(attrs: dict, device_cfg) -> tuple[FeatureExtractor, Source]:
    """The extractor that made a features file, from the attributes it wrote."""
    image_shape = tuple(int(v) for v in attrs["image_size"])
    pipeline = Pipeline(Augmentation(AugmentationSchema(**parsed(attrs["augmentation"])), image_shape),
                        Normalizer(attrs["normalize"], attrs["mean"], attrs["std"]), bool(attrs["channels_last"]))
    if attrs.get("checkpoint"):
        model = load_trained(attrs["source_run"] or None, Path(attrs["checkpoint"]))[2]
    else:
        model, _ = registry_model(OmegaConf.create(parsed(attrs["model_config"])), image_shape,
                                  len(attrs["label_names"]), int(attrs.get("seed", 0)))
    parts = ready(model, pipeline, image_shape, device_cfg)
    layer = LayerChoice(attrs["layer"], attrs["layer_take"], attrs["layer_pool"] or None, int(attrs["feature_dim"]))
    source = Source(**parts.parts(), dataset_cfg=OmegaConf.create(parsed(attrs["dataset_config"])))
    return FeatureExtractor(source.model, layer), source
