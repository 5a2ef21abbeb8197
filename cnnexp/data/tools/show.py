"""`cnnexp data show`: what a dataset and augmentation config give the model, before training on it."""

from pathlib import Path

import torch
from rich.console import Group
from rich.table import Table
from rich.text import Text

from cnnexp.data import create_dataset
from cnnexp.data.image_data import ImageData
from cnnexp.data.transforms import Augmentation, Normalizer


def counts_table(class_names: list[str], counts: dict[str, list[int]]) -> Table:
    """Images per class (rows) and split (columns), with totals."""
    table = Table()
    for column in ("class", *counts, "total"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for i, name in enumerate(class_names):
        row = [c[i] for c in counts.values()]
        table.add_row(name, *map(str, row), str(sum(row)))
    totals = [sum(c) for c in counts.values()]
    table.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    return table


def split_counts(data: ImageData) -> dict[str, list[int]]:
    return {name: torch.bincount(split.labels.cpu(), minlength=data.num_classes).tolist()
            for name, split in data.splits.items()}


def describe(cfg) -> tuple[ImageData, Group]:
    """The dataset a config names, and a summary: counts per split and class, shapes, statistics."""
    data = create_dataset(cfg.dataset, cfg.seed).limit(cfg.dataset.get("limit"))
    train = data.split("train")
    stats = Normalizer.fit("standardize", train.images, data.meta.get("channel_stats"))
    augmentation = Augmentation(cfg.augmentation, data.image_shape)
    storage = "streamed from files" if data.meta.get("in_memory") is False else "in memory"
    lines = [
        f"images {'x'.join(map(str, data.image_shape))} (C x H x W) uint8, {storage}",
        f"train mean [{', '.join(f'{v:.2f}' for v in stats.mean)}], "
        f"std [{', '.join(f'{v:.2f}' for v in stats.std)}] (0..255)",
        f"dataset.normalize={cfg.dataset.normalize}; augmentation={augmentation.name}: "
        f"model input {'x'.join(map(str, augmentation.out_shape))}",
    ]
    if data.meta.get("skipped"):
        lines.append(f"{data.meta['skipped']} unreadable files skipped")
    return data, Group(counts_table(data.class_names, split_counts(data)), *(Text(line) for line in lines))


def sample_grid(cfg, data: ImageData, out: Path) -> None:
    """A PNG: `cfg.samples` images of `cfg.split` as stored (top row) and two augmented training
    views of each (the rows below), titled with their class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = data.split(cfg.split)
    generator = torch.Generator().manual_seed(cfg.seed)
    index = torch.randperm(len(split), generator=generator)[: max(1, cfg.samples)]
    images = split.images[index].cpu().float()
    augmentation = Augmentation(cfg.augmentation, data.image_shape)
    rows = [("image", images), *((f"augmented {i}", augmentation.train(images, generator)) for i in (1, 2))]
    fig, axes = plt.subplots(len(rows), len(index), figsize=(1.7 * len(index), 1.9 * len(rows)), squeeze=False)
    for r, (title, batch) in enumerate(rows):
        for c, image in enumerate(batch):
            ax = axes[r][c]
            pixels = image.clamp(0, 255).byte().permute(1, 2, 0).numpy()
            ax.imshow(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(data.class_names[int(split.labels[index[c]])], fontsize=8)
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.suptitle(f"{cfg.dataset.name} / {cfg.split} / augmentation={augmentation.name}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
