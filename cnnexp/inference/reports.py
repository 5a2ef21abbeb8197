"""Files and tables an evaluation leaves: confusion matrix (CSV and PNG heat map), per-class CSV,
per-subgroup CSV (`by=`), a PNG grid of misclassified images, and the rich tables and lines printed to
the console.

Figures use matplotlib's object API with the Agg canvas, so no GUI backend is touched.
"""

import csv
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from cnnexp.utils.text import WIDTH, percent

MAX_TICK_LABELS = 60  # more classes than this: the heat map shows no class names
GRID_COLUMNS = 8


def console() -> Console:
    """Rich output as wide on a terminal as in a file or a pipe: tables fit WIDTH columns; plain lines are
    not wrapped by rich (commands fold their long lines themselves, at words)."""
    return Console(highlight=False, soft_wrap=True, width=WIDTH)


def save_figure(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def write_confusion_csv(matrix: torch.Tensor, names: list[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *names])
        for name, row in zip(names, matrix.tolist()):
            writer.writerow([name, *row])


def write_subgroup_csv(rows: list[dict], field: str, path: Path) -> None:
    """One row per value of the field: its count, accuracy, error, one-off (ordered classes), mean top-1
    probability and whether it is small enough to be uncertain."""
    columns = [c for c in ("n", "correct", "accuracy", "error", "one_off", "mean_prob", "uncertain") if c in rows[0]]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([field, *columns])
        for row in rows:
            writer.writerow([row["value"], *(row[c] for c in columns)])


def write_per_class_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["class", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(rows)


def plot_confusion(matrix: torch.Tensor, names: list[str], path: Path, title: str, one_off_band: bool = False) -> None:
    """A heat map with class names on both axes, and the counts written in when there is room;
    `one_off_band` outlines the cells one-off accuracy counts (the diagonal and its neighbours)."""
    k = len(names)
    side = min(max(6.0, 0.3 * k + 2), 30.0)
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    image = ax.imshow(matrix.numpy(), cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    if k <= MAX_TICK_LABELS:
        ax.set_xticks(range(k), names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
    if k <= 20:
        peak = max(int(matrix.max()), 1)
        for (i, j), count in np.ndenumerate(matrix.numpy()):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if count > peak / 2 else "black")
    if one_off_band:
        limits = ax.get_xlim(), ax.get_ylim()
        for side in (-1, 1):  # a staircase on each side of the band |predicted - true| <= 1
            edge = [min(max(i + side, 0), k - 1) + side / 2 for i in range(k)]
            ax.plot([x for x in edge for _ in (0, 1)], [y for i in range(k) for y in (i - 0.5, i + 0.5)],
                    color="darkorange", linewidth=1.5)
        ax.set(xlim=limits[0], ylim=limits[1])
    fig.tight_layout()
    save_figure(fig, path)


def plot_image_grid(images: torch.Tensor, captions: list[str], path: Path, title: str) -> None:
    """uint8 N x C x H x W images (grey or RGB; None when there are none), one caption under each."""
    n = len(captions)
    cols = max(1, min(GRID_COLUMNS, math.ceil(math.sqrt(n))))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(2.0 * cols, 2.2 * rows + 0.5))
    fig.suptitle(title, fontsize=10)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i < n:
            picture = images[i].cpu().permute(1, 2, 0).numpy()
            ax.imshow(picture[:, :, 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[i], fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def change(before, after, is_fraction: bool = True) -> str:
    if before is None or after is None:
        return "-"
    return f"{100 * (after - before):+.2f}" if is_fraction else f"{after - before:+.4f}"


def results_table(plain: dict, tencrop: dict | None, tencrop_label: str, plain_label: str = "centre") -> Table:
    """Centre view and (optionally) ten-crop side by side, with the change in points."""
    table = Table(box=None, pad_edge=False)
    table.add_column("metric")
    table.add_column(plain_label, justify="right")
    if tencrop is not None:
        table.add_column(tencrop_label, justify="right")
        table.add_column("change", justify="right")
    ordered = "one_off" in plain  # age groups: the paper's exact and one-off accuracy
    rows = (("error", "error"), ("accuracy", "accuracy (exact)" if ordered else "accuracy"),
            *((("one_off", "one-off"),) if ordered else ()), ("rank1", "rank-1"), ("rank5", "rank-5"))
    for key, label in rows:
        row = [label, percent(plain[key])]
        if tencrop is not None:
            row += [percent(tencrop[key]), change(plain[key], tencrop[key])]
        table.add_row(*row)
    loss_row = ["loss", f"{plain['loss']:.4f}"]
    if tencrop is not None:
        loss_row += [f"{tencrop['loss']:.4f}", change(plain["loss"], tencrop["loss"], is_fraction=False)]
    table.add_row(*loss_row)
    return table


def per_class_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title, box=None, pad_edge=False)
    for name in ("class", "precision", "recall", "f1", "support"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for row in rows:
        table.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                      str(row["support"]))
    return table


def subgroup_table(rows: list[dict], field: str, title: str, uncertain_below: int) -> Table:
    """One row per value of a field; a `*` beside the count of a group too small to trust."""
    ordered = "one_off" in rows[0]
    small = any(row["uncertain"] for row in rows)
    caption = f"* fewer than {uncertain_below} images: uncertain" if small else None
    table = Table(title=title, caption=caption, box=None, pad_edge=False, caption_justify="left")
    for name in (field, "images", "accuracy", "error", *(("one-off",) if ordered else ()), "mean top-1 prob"):
        table.add_column(name, justify="left" if name == field else "right")
    for row in rows:
        table.add_row(row["value"], f"{row['n']:,}" + (" *" if row["uncertain"] else "  " if small else ""),
                      percent(row["accuracy"]), percent(row["error"]),
                      *((percent(row["one_off"]),) if ordered else ()), f"{row['mean_prob']:.3f}")
    return table


def gap_line(gap: dict | None, field: str, uncertain_below: int) -> str:
    """The spread between the best and the worst subgroup, naming both, and what it leaves out."""
    if gap is None:
        return f"gap: one {field} in this split, nothing to compare"
    metric = gap["metric"].replace("_", "-")
    line = (f"gap: {gap['points']:.2f} points of {metric} between the best {field}, {gap['best']} "
            f"({percent(gap['best_value'])}, {gap['best_n']:,} images), and the worst, {gap['worst']} "
            f"({percent(gap['worst_value'])}, {gap['worst_n']:,} images)")
    if gap["left_out"]:
        line += f"; leaving out {', '.join(gap['left_out'])} (under {uncertain_below} images)"
    if gap["uncertain"]:
        line += f"; uncertain: groups under {uncertain_below} images compared"
    return line
