"""Data: the dataset registry over `sources/` (one module per dataset), the containers
(`image_data`, `batches`, `stream`), the batched `transforms`, image files (`images`, `faces`) and the
`tools/` behind `cnnexp data`.

Add a dataset by dropping a module into `sources/` that decorates a factory with `@register_dataset`
(from `data/registry.py`); the factory takes the `dataset` config node and the run's seed.
"""

from cnnexp.data.image_data import ImageData, Split
from cnnexp.data.registry import DATASETS, register_dataset

DATASETS.discover("cnnexp.data.sources")
list_datasets = DATASETS.names


def create_dataset(cfg, seed: int = 0) -> ImageData:
    """Build the dataset named by `cfg.name` from its config node."""
    return DATASETS.create(cfg.name, cfg=cfg, seed=seed)


__all__ = ["ImageData", "Split", "create_dataset", "list_datasets", "register_dataset"]
