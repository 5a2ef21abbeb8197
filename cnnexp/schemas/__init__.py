"""Typed configs: one schema per primary config, per picture of `viz` and per model, below the engine
so that the engine, the data sources and the commands read the same typed fields.

- A key has its value (with its comment) in conf/ and its type, with any range check, in one field
  here: every primary YAML names `<config>_schema` first in its defaults list, so Hydra/OmegaConf
  refuse a wrong type or an unknown key while composing, and `typed(cfg)` (which every command's
  config goes through once, before anything runs) runs the range checks (`check()` beside the fields).
- Model configs are made from the factories' signatures (`models.py`); dataset sources, optimizers and
  schedulers keep their keys in their YAML (each choice has its own keys; unknown keys are still
  refused by Hydra's struct mode) and are checked where they are used.
- A run's saved config is brought onto today's keys by `upgrade`, so runs made before a key existed
  keep resuming and loading.
"""

from omegaconf import OmegaConf, open_dict

from cnnexp.schemas.commands import (PICTURE_SCHEMAS, EvalSchema, ExportSchema, FeaturesSchema, PredictSchema,
                                     ServeSchema, SweepSummarizeSchema)
from cnnexp.schemas.commands import BuildHdf5Schema, BuildShardsSchema, FromVideoSchema, ProbeSchema
from cnnexp.schemas.models import model_schemas
from cnnexp.schemas.run import DataShowSchema, SweepSchema, TrainSchema

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
    "model": {"weights": None, "download": True, "preprocess": "weights", "freeze": [], "trainable": None},
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
    return config


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (once per process; launchers' processes do it on import)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in PRIMARY_SCHEMAS.items():
        store.store(name=name, node=schema)
    for name, schema in model_schemas().items():
        store.store(group="model", name=name, node=schema)


__all__ = ["PICTURE_SCHEMAS", "PRIMARY_SCHEMAS", "register_schemas", "typed", "upgrade"]
