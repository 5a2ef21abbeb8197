"""Training curves as a PNG: train/val loss and val/test error against epoch, the best epoch marked.

The trainer redraws `curves.png` in the run folder at every evaluation (see `CurvesPlot` in
loggers.py) and `cnnexp viz curves` draws several runs on one figure with the same function.
Rows are the trainer's history rows (`epoch`, `step`, `train_loss`, `val_loss`, `val_error`,
`test_error`; a value may be None: the test split is only scored at a new best).
"""

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnexp.utils.files import atomic_path

SIZE_INCHES = (10.0, 4.0)
DPI = 100  # curves.png is SIZE_INCHES x DPI = 1000 x 400 pixels


def finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def x_axis(rows: list[dict]) -> tuple[list, str]:
    """Epochs when there is one evaluation an epoch, else steps (trainer.eval_every puts several in one)."""
    epochs = [row["epoch"] for row in rows]
    if len(set(epochs)) == len(epochs):
        return epochs, "epoch"
    return [row["step"] for row in rows], "step"


def series(rows: list[dict], xs: list, key: str, scale: float = 1.0) -> tuple[list, list]:
    points = [(x, scale * float(row[key])) for x, row in zip(xs, rows) if finite(row.get(key))]
    return [p[0] for p in points], [p[1] for p in points]


def best_row(rows: list[dict]) -> int | None:
    """Index of the first row with the lowest validation error (the trainer's best checkpoint)."""
    scored = [(float(row["val_error"]), i) for i, row in enumerate(rows) if finite(row.get("val_error"))]
    return min(scored)[1] if scored else None


def named(label: str, what: str) -> str:
    """Legend text: the run's label (none when there is one run) and the series."""
    return f"{label}: {what}" if label else what


def plot_run(loss_ax, error_ax, rows: list[dict], label: str, color: str) -> str:
    """One run's four series on the two panels; returns the x-axis name."""
    xs, x_name = x_axis(rows)
    loss_ax.plot(*series(rows, xs, "train_loss"), color=color, linestyle="--", label=named(label, "train"))
    loss_ax.plot(*series(rows, xs, "val_loss"), color=color, label=named(label, "val"))
    error_ax.plot(*series(rows, xs, "val_error", 100), color=color, label=named(label, "val"))
    error_ax.plot(*series(rows, xs, "test_error", 100), color=color, linestyle="none", marker="o", markersize=3,
                  label=named(label, "test (at a new best)"))
    best = best_row(rows)
    if best is not None:
        error = 100 * float(rows[best]["val_error"])
        for ax in (loss_ax, error_ax):
            ax.axvline(xs[best], color=color, linestyle=":", linewidth=1)
        error_ax.plot([xs[best]], [error], color=color, marker="*", markersize=12, linestyle="none",
                      label=named(label, f"best: {error:.2f} % at {x_name} {xs[best]}"))
    return x_name


def draw_curves(histories: dict[str, list[dict]], path: Path, title: str) -> None:
    """One figure for one or more runs ({label: history rows}), written atomically to `path`."""
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI)
    loss_ax, error_ax = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(histories))]
    x_name = "epoch"
    for (label, rows), color in zip(histories.items(), colors):
        if rows:
            x_name = plot_run(loss_ax, error_ax, rows, label, color)
    loss_ax.set(title="loss", xlabel=x_name, ylabel="cross-entropy")
    error_ax.set(title="error", xlabel=x_name, ylabel="error (%)")
    for ax in (loss_ax, error_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.86, wspace=0.18)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
