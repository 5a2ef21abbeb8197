"""A probe run as a model `cnnexp predict` can use: the network that made the features (rebuilt from
the attributes the features file carried into probe.h5), the hook on its layer, and the fitted
probe as a linear layer, behind the same `Restored` interface a train run gives."""

from pathlib import Path

from omegaconf import OmegaConf
from torch import nn

from cnnexp.features.extract import source_from_attrs
from cnnexp.features.probe import LinearProbe, load_probe
from cnnexp.inference.restore import Restored
from cnnexp.utils.errors import UserError

PROBE_FILE = "probe.h5"


def is_probe_run(run) -> bool:
    return run is not None and (Path(str(run)).expanduser() / PROBE_FILE).is_file()


def restore_probe(run, checkpoint, device_cfg) -> Restored:
    if checkpoint is not None:
        raise UserError(f"run={run} is a probe run (it holds {PROBE_FILE}); checkpoint= does not apply to it")
    path = Path(str(run)).expanduser() / PROBE_FILE
    arrays, attrs = load_probe(path)
    extractor, source = source_from_attrs(attrs, device_cfg)
    model = nn.Sequential(extractor, LinearProbe(arrays)).to(source.device).eval()
    config = OmegaConf.create({"dataset": source.dataset_cfg, "model": {"name": f"probe on {attrs['model']}"},
                               "seed": int(attrs.get("seed", 0))})  # the seed that split the features' dataset
    return Restored(config, path, 0, 0, model, source.pipeline, list(attrs["label_names"]), source.image_shape,
                    source.device, source.precision)
