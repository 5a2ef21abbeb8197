"""Structured-config schemas: Hydra/OmegaConf refuse a wrong type or an unknown key while composing,
before anything runs.

- Every primary config (and the fixed parts of a training config: seed, trainer, device,
  augmentation) has a dataclass below; the YAML names `<config>_schema` first in its defaults list,
  so its values (the one source of the defaults, with their comments) are merged into typed fields.
- Each model's config is made from its factory's signature (`cnnexp/models/<family>.py`), read with
  `ast` so that composing a config never imports torch: the keyword parameters after `in_shape,
  num_classes` are the keys, their literal defaults the defaults, their annotations (or the defaults'
  types) the types; then the keys every model takes (`COMMON_MODEL_KEYS`: weights, freezing). So a
  model has one source for its keys and defaults, and adding one is one file.
- Dataset sources, optimizers and schedulers keep their keys in their YAML (`conf/dataset/<name>.yaml`,
  ...): their keys differ from one choice to the next, unknown keys are still refused (Hydra's struct
  mode), and their values are checked where they are used (`config/checks.py`, the sources, the
  optimizer's own constructor), each as one `error:` line.
"""

import ast
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass
class TrainerSchema:
    epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
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


@dataclass
class DeviceSchema:
    type: str = MISSING
    channels_last: bool = MISSING
    threads: Optional[int] = MISSING
    precision: str = MISSING
    compile: bool = MISSING


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
class TrainSchema:
    seed: int = MISSING
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    device: DeviceSchema = field(default_factory=DeviceSchema)
    augmentation: AugmentationSchema = field(default_factory=AugmentationSchema)
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING


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
    sweep: SweepSettings = field(default_factory=SweepSettings)


@dataclass
class SummarizeSettings:
    metric: Optional[str] = MISSING


@dataclass
class SweepSummarizeSchema:
    dir: Optional[str] = MISSING
    sweep: SummarizeSettings = field(default_factory=SummarizeSettings)


@dataclass
class RunChoice:
    """A trained run to read (its folder, or a checkpoint file) and which of its checkpoints."""
    run: Optional[str] = MISSING
    checkpoint: Optional[str] = MISSING
    which: str = MISSING


@dataclass
class EvalSettings:
    tencrop: bool = MISSING
    tencrop_reduce: str = MISSING
    tencrop_mirror: bool = MISSING
    max_images: int = MISSING


@dataclass
class EvalBatch:
    batch_size: Optional[int] = MISSING


@dataclass
class EvalSchema(RunChoice):
    split: str = MISSING
    eval: EvalSettings = field(default_factory=EvalSettings)
    trainer: EvalBatch = field(default_factory=EvalBatch)
    dataset: Any = MISSING
    device: DeviceSchema = field(default_factory=DeviceSchema)


@dataclass
class GuessSchema(RunChoice):
    """What predict and serve share: the run to load and how its guesses for an image are made."""
    topk: int = MISSING
    tencrop: bool = MISSING
    tencrop_mirror: bool = MISSING
    detect_face: bool = MISSING
    face_margin: float = MISSING
    resize: Optional[str] = MISSING
    device: DeviceSchema = field(default_factory=DeviceSchema)


@dataclass
class PredictSchema(GuessSchema):
    image: Optional[str] = MISSING
    json: bool = MISSING


@dataclass
class ServeSchema(GuessSchema):
    host: str = MISSING
    port: int = MISSING
    max_batch: int = MISSING
    max_wait_ms: float = MISSING
    max_upload_mb: float = MISSING
    read_timeout_s: float = MISSING
    workers: int = MISSING
    access_log: bool = MISSING
    backend: str = MISSING
    onnx: Optional[str] = MISSING


@dataclass
class ExportSchema(RunChoice):
    format: str = MISSING
    out: Optional[str] = MISSING
    opset: int = MISSING
    dynamic_batch: bool = MISSING
    resize: Optional[str] = MISSING
    dataset: Any = MISSING


@dataclass
class BuildHdf5Schema:
    src: Optional[str] = MISSING
    out: Optional[str] = MISSING
    size: Any = MISSING  # an int or [height, width]
    channels: int = MISSING
    resize: str = MISSING
    split: list[float] = MISSING
    seed: int = MISSING
    compression: Optional[str] = MISSING
    buffer: int = MISSING
    workers: int = MISSING
    strict: bool = MISSING


@dataclass
class FromVideoSchema:
    video: Optional[str] = MISSING
    label: Optional[str] = MISSING
    out: str = MISSING
    every: int = MISSING
    width: int = MISSING
    height: int = MISSING
    margin: float = MISSING
    grey: bool = MISSING
    min_face: int = MISSING
    scale_factor: float = MISSING
    min_neighbors: int = MISSING


@dataclass
class FeaturesSchema(RunChoice):
    model: Any = MISSING
    out: Optional[str] = MISSING
    overwrite: bool = MISSING
    layer: Optional[str] = MISSING
    pool: Optional[str] = MISSING
    max_features: int = MISSING
    splits: list[str] = MISSING
    batch_size: int = MISSING
    write_buffer: int = MISSING
    tencrop: bool = MISSING
    tencrop_mirror: bool = MISSING
    mean: Optional[list[float]] = MISSING
    std: Optional[list[float]] = MISSING
    seed: int = MISSING
    dataset: Any = MISSING
    device: DeviceSchema = field(default_factory=DeviceSchema)


@dataclass
class ProbeSchema:
    features: Optional[str] = MISSING
    C: list[float] = MISSING
    cv: Any = MISSING  # a number of folds or "val"
    fit: str = MISSING
    train_limit: Optional[int] = MISSING
    scale: bool = MISSING
    max_iter: int = MISSING
    n_jobs: int = MISSING
    threads: Optional[int] = MISSING
    split: str = MISSING
    seed: int = MISSING


PRIMARY_SCHEMAS = {"train_schema": TrainSchema, "data_show_schema": DataShowSchema, "sweep_schema": SweepSchema,
                   "sweep_summarize_schema": SweepSummarizeSchema, "eval_schema": EvalSchema,
                   "predict_schema": PredictSchema, "serve_schema": ServeSchema, "data_build_hdf5_schema": BuildHdf5Schema,
                   "data_from_video_schema": FromVideoSchema, "features_schema": FeaturesSchema,
                   "probe_schema": ProbeSchema, "export_schema": ExportSchema}


# ---- model configs from the factories' signatures ------------------------------------------------
SIMPLE_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "Any": Any}


def annotation_type(node: ast.expr | None, default) -> Any:
    """The config type of a parameter: its annotation (int, float, str, bool, list[T], T | None), else
    the type of its default."""
    if node is None:
        return default_type(default)
    if isinstance(node, ast.Name) and node.id in SIMPLE_TYPES:
        return SIMPLE_TYPES[node.id]
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("list", "tuple"):
        inner = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
        return typing.List[annotation_type(inner, None)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = annotation_type(node.left, None), annotation_type(node.right, None)
        return Optional[left if right is type(None) else right]
    return Any


def default_type(default) -> Any:
    if isinstance(default, (list, tuple)):
        return typing.List[default_type(default[0]) if default else Any]
    if default is None:
        return Any
    return type(default)


def model_fields(fn: ast.FunctionDef) -> list[tuple]:
    """(name, type, dataclass field) for each config key of a factory: its parameters after the first two."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = list(zip(positional, defaults))[2:] + list(zip(args.kwonlyargs, args.kw_defaults))
    fields = []
    for arg, default_node in params:
        default = MISSING if default_node is None else ast.literal_eval(default_node)
        kind = annotation_type(arg.annotation, None if default is MISSING else default)
        spec = (field(default_factory=lambda d=default: list(d)) if isinstance(default, (list, tuple))
                else field(default=default))
        fields.append((arg.arg, kind, spec))
    return fields


def is_registered(fn: ast.FunctionDef) -> bool:
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if getattr(target, "id", getattr(target, "attr", None)) == "register_model":
            return True
    return False


def common_fields() -> list[tuple]:
    """The keys every model takes (starting weights, freezing: `cnnexp.models.COMMON_MODEL_KEYS`)."""
    from cnnexp.models import COMMON_MODEL_KEYS

    fields = []
    for key, (annotation, default, _help) in COMMON_MODEL_KEYS.items():
        kind = annotation_type(ast.parse(annotation, mode="eval").body, default)
        spec = field(default_factory=lambda d=default: list(d)) if isinstance(default, tuple) else field(default=default)
        fields.append((key, kind, spec))
    return fields


def model_schemas(models_dir: Path = MODELS_DIR) -> dict[str, type]:
    """{model name: dataclass} for every `@register_model` factory in the models package: its own keys,
    then the keys every model takes."""
    schemas = {}
    for path in sorted(models_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and is_registered(node):
                fields = [("name", str, field(default=node.name)), *model_fields(node), *common_fields()]
                schemas[node.name] = dataclasses.make_dataclass(f"{node.name}_config", fields)
    return schemas


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (once per process; launchers' processes do it on import)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in PRIMARY_SCHEMAS.items():
        store.store(name=name, node=schema)
    for name, schema in model_schemas().items():
        store.store(group="model", name=name, node=schema)
