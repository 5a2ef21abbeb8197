"""`dataset=shards`: WebDataset tar shards written by `cnnexp data build-shards` (cnnexp/data/shards.py),
streamed by every training process and DataLoader worker from its own shards. `dataset.path` is the
shards' folder (or its shards.json); the classes, splits, sample counts and labels come from shards.json.
"""

import json
from pathlib import Path

import torch

from cnnexp.data.registry import register_dataset
from cnnexp.data.image_data import ImageData, Split
from cnnexp.utils.choices import SPLITS
from cnnexp.data.images import image_size
from cnnexp.data.shards import FORMAT, INDEX_NAME, Decoding, ShardImages
from cnnexp.data.sources.folder import user_path
from cnnexp.utils.errors import UserError


def read_index(path: Path) -> tuple[Path, dict]:
    """(the shards' folder, its shards.json), or a one-line error saying how to make them."""
    index = path / INDEX_NAME if path.is_dir() else path
    build = f"build them with `cnnexp data build-shards src=<image folder> out={path}`"
    if not index.is_file():
        raise UserError(f"no {INDEX_NAME} at {index}; {build}")
    try:
        meta = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{index} is not readable JSON ({exc}); {build}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "train" not in meta.get("splits", {}):
        raise UserError(f"{index} does not describe cnnexp shards (format '{FORMAT}' with a train split); {build}")
    return index.parent, meta


def shard_split(root: Path, entry: dict, decoding: Decoding, cfg) -> Split:
    shards = entry["shards"]
    labels = torch.tensor([label for shard in shards for label in shard["labels"]], dtype=torch.int64)
    images = ShardImages(root, shards, decoding, int(cfg.workers), int(cfg.readers), int(cfg.shuffle_buffer))
    return Split(images, labels)


@register_dataset
def shards(cfg, seed: int = 0) -> ImageData:
    root, meta = read_index(user_path(cfg.path, "dataset.path"))
    size = cfg.size if cfg.size is not None else meta.get("size")
    if size is None:
        raise UserError("the shards hold images of different sizes; set dataset.size (e.g. dataset.size=128)")
    channels = int(cfg.channels if cfg.channels is not None else meta["channels"])
    decoding = Decoding(channels, image_size(size), str(cfg.resize), int(cfg.max_pixels))
    splits = {name: shard_split(root, meta["splits"][name], decoding, cfg) for name in SPLITS if name in meta["splits"]}
    return ImageData(splits, list(meta["classes"]), meta={"source": str(root), "in_memory": False})
