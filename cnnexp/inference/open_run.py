"""The one way a command opens a trained run: `open_run(run=, checkpoint=, which=)` gives its model
ready to run, its evaluation pipeline (centre view + the run's normalisation), class names, config
and how user images are resized, so the user repeats nothing the run already recorded.

- a train run folder: its config.yaml and `<run>/checkpoints/<which>.pt` (or `checkpoint=` when given);
- a checkpoint file alone: the config it carries;
- a probe run (`cnnexp probe`, a folder with probe.h5): the network that made the features, rebuilt
  from the attributes the features file carried into probe.h5, with the fitted probe as its last layer.
"""

from pathlib import Path

from omegaconf import OmegaConf
from torch import nn

from cnnexp.engine.assemble import Restored, restore_run
from cnnexp.features.extract import source_from_attrs
from cnnexp.features.probe import LinearProbe, load_probe
from cnnexp.schemas.datasets import RESIZE  # when neither resize= nor the run's dataset says how to fit an image
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import PROBE_FILE, checkpoint_path, is_probe_run


def open_run(run, checkpoint, which: str, device_cfg, dataset_overrides: dict | None = None, resize: str | None = None,
             probe: bool = False) -> Restored:
    """Everything needed to evaluate or query a trained run; one-line errors for every bad input.
    `probe`: whether the command takes a probe run (predict, serve) or needs a train run."""
    path = checkpoint_path(run, checkpoint, which)
    if is_probe_run(run):
        if not probe:
            raise UserError(f"run={run} is a probe run (it holds {PROBE_FILE}); give a train run folder "
                            "(outputs/train/<run>)")
        opened = open_probe(path, device_cfg)
    else:
        opened = restore_run(run, path, device_cfg, dataset_overrides)
    opened.resize = resize or dataset_resize(opened.config.dataset)
    return opened


def dataset_resize(dataset_cfg) -> str:
    """How the run's dataset brought images to size: its `resize` key (folder, data tools' HDF5 files);
    the datasets without one (olivetti, mnist) hold images of one size, which `aspect` keeps as they are."""
    return dataset_cfg.resize if "resize" in dataset_cfg and dataset_cfg.resize else RESIZE


def open_probe(path: Path, device_cfg) -> Restored:
    """A probe run's features network followed by its probe, behind the interface a train run has."""
    arrays, attrs = load_probe(path)
    extractor, source = source_from_attrs(attrs, device_cfg)
    source.model = nn.Sequential(extractor, LinearProbe(arrays)).to(source.device).eval()
    config = OmegaConf.create({"dataset": source.dataset_cfg, "model": {"name": f"probe on {attrs['model']}"},
                               "seed": int(attrs.get("seed", 0))})  # the seed that split the features' dataset
    return Restored(**source.parts(), config=config, class_names=list(attrs["label_names"]), checkpoint_path=path)


def dataset_overrides(cfg, overrides: list[str]) -> dict:
    """The `dataset.*` keys among a command line's `overrides` (e.g. `dataset.root=...`), with their
    values in `cfg`."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    return {k.split(".", 1)[1]: OmegaConf.select(cfg, k) for k in keys if k.startswith("dataset.")}
