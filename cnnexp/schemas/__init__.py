"""Typed configs: one schema per primary config, per picture of `viz` and per model, below the engine
so that the engine, the data sources and the commands read the same typed fields.

- A key has its value (with its comment) in conf/ and its type, with any range check, in one field
  here: every primary YAML names `<config>_schema` first in its defaults list, so Hydra/OmegaConf
  refuse a wrong type or an unknown key while composing, and `typed(cfg)` (which every command's
  config goes through once, before anything runs) runs the range checks (`check()` beside the fields).
- Model configs are made from the factories' signatures (`models.py`); each dataset source has its
  schema (`datasets.py`, named first in conf/dataset/<name>.yaml); optimizers and schedulers keep
  their keys in their YAML (any argument of the class may be added, `constructors.py` refuses others) with the
  shared ones typed here.
- A run's saved config is brought onto today's keys by `upgrade`, so runs made before a key existed
  keep resuming and loading.
"""

from dataclasses import asdict

from omegaconf import OmegaConf, open_dict

from cnnexp.models import COMMON_MODEL_KEYS
from cnnexp.schemas.commands import (PICTURE_SCHEMAS, EvalSchema, ExportSchema, FeaturesSchema, PredictSchema,
                                     ServeSchema, SweepSummarizeSchema)
from cnnexp.schemas.commands import BuildHdf5Schema, BuildShardsSchema, FromVideoSchema, ProbeSchema
from cnnexp.schemas.datasets import MAX_PIXELS, SOURCE_SCHEMAS, field_help
from cnnexp.schemas.models import model_schemas
from cnnexp.schemas.run import AugmentationSchema, DataShowSchema, SweepSchema, TrainSchema

PRIMARY_SCHEMAS = {"train_schema": TrainSchema, "data_show_schema": DataShowSchema, "sweep_schema": SweepSchema,
                   "sweep_summarize_schema": SweepSummarizeSchema, "eval_schema": EvalSchema,
                   "predict_schema": PredictSchema, "serve_schema": ServeSchema, "data_build_hdf5_schema": BuildHdf5Schema,
                   "data_build_shards_schema": BuildShardsSchema,
                   "data_from_video_schema": FromVideoSchema, "features_schema": FeaturesSchema,
                   "probe_schema": ProbeSchema, "export_schema": ExportSchema}

# Keys added to cnnexp after runs were made, with the value that reproduces how those runs behaved.
ADDED_KEYS = {
    "trainer": {"label_smoothing": 0.0, "ema_decay": None, "best_by": "val_error", "log_every": 1, "sync_bn": False,
                "eval_memory_mb": 512},
    "device": {"threads": None, "precision": "fp32", "compile": False, "channels_last": False},
    "optimizer": {"weight_decay": 0.0, "head_lr_mult": 1.0, "decay_norm_bias": True},
    "scheduler": {"warmup_epochs": 0},
    "dataset": {"limit": None},
    "augmentation": asdict(AugmentationSchema()),  # each key's default is no augmentation
    "model": {key: list(default) if isinstance(default, tuple) else default  # the defaults reproduce old runs
              for key, (_, default, _) in COMMON_MODEL_KEYS.items()},
}
# The same for one dataset source's keys.
ADDED_SOURCE_KEYS = {
    "folder": {"check": True, "max_pixels": MAX_PIXELS},
    "olivetti": {"root": None, "size": None},
    "table": {"bins": None},
    "utkface": {"bins": None},
}


def typed(cfg):
    """The composed config as typed objects (`OmegaConf.to_object`), which runs every schema's range
    checks: one `error:` line for the first value out of range."""
    return OmegaConf.to_object(cfg)


def upgrade(saved):
    """A run's saved config (config.yaml, a checkpoint's config) with the keys added since it was made."""
    config = OmegaConf.create(saved) if not OmegaConf.is_config(saved) else saved
    with open_dict(config):
        for group, added in ADDED_KEYS.items():
            node = config.get(group)
            for key, value in added.items():
                if node is not None and key not in node:
                    node[key] = value
        dataset = config.get("dataset")
        for key, value in ADDED_SOURCE_KEYS.get(str(dataset.get("name")) if dataset else None, {}).items():
            dataset.setdefault(key, value)
    return config


def schema_comments(config_name: str, choices: dict) -> dict[str, str]:
    """{dotted key: help} of a command's keys whose default (and so whose explanation) lives in a schema
    field rather than in a YAML file: max_pixels and resize, shared by several configs."""
    comments = field_help(PRIMARY_SCHEMAS[f"{config_name}_schema"]) if f"{config_name}_schema" in PRIMARY_SCHEMAS else {}
    source = SOURCE_SCHEMAS.get(str(choices.get("dataset")))
    if source is not None:
        comments |= {f"dataset.{key}": help_text for key, help_text in field_help(source).items()}
    return comments


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (once per process; launchers' processes do it on import)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in PRIMARY_SCHEMAS.items():
        store.store(name=name, node=schema)
    for name, schema in model_schemas().items():
        store.store(group="model", name=name, node=schema)
    for name, schema in SOURCE_SCHEMAS.items():
        store.store(group="dataset_schema", name=name, node=schema)


__all__ = ["AugmentationSchema", "PICTURE_SCHEMAS", "PRIMARY_SCHEMAS", "register_schemas", "schema_comments", "typed", "upgrade"]
