"""Training curves as a PNG: train/val loss and val/test error against epoch, the best epoch marked.

The trainer keeps `curves.png` in the run folder up to date while it trains (see `CurvesPlot` in
loggers.py, which hands the rows to `keep_drawing`, running in a low-priority process of its own, redrawing
at most every few seconds) and `cnnexp viz curves` draws several runs on one figure with the same function.
Rows are the trainer's history rows (`epoch`, `step`, `train_loss`, `val_loss`, `val_error`,
`test_error`; a value may be None: the test split is only scored at a new best).
"""

import json
import math
import sys
import threading
import time
from pathlib import Path

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
    """Index of the row of the trainer's best checkpoint: the last one with a test error (the test split
    is scored at each new best, whatever `trainer.best_by` is), else the first lowest validation error."""
    new_bests = [i for i, row in enumerate(rows) if finite(row.get("test_error"))]
    if new_bests:
        return new_bests[-1]
    scored = [(float(row["val_error"]), i) for i, row in enumerate(rows) if finite(row.get("val_error"))]
    return min(scored)[1] if scored else None


def plot_run(loss_ax, error_ax, rows: list[dict], label: str, color: str) -> str:
    """One run's curves on the two panels; returns the x-axis name. A lone run (no label) gets a legend
    entry per series; in a comparison each run gets one entry, with its best validation error."""
    xs, x_name = x_axis(rows)
    best = best_row(rows)
    best_text = f"best {100 * float(rows[best]['val_error']):.2f} % at {x_name} {xs[best]}" if best is not None else ""
    lone = not label
    loss_ax.plot(*series(rows, xs, "train_loss"), color=color, linestyle="--", label="train" if lone else None)
    loss_ax.plot(*series(rows, xs, "val_loss"), color=color, label="val" if lone else f"{label}: {best_text}")
    error_ax.plot(*series(rows, xs, "val_error", 100), color=color, label="val" if lone else None)
    error_ax.plot(*series(rows, xs, "test_error", 100), color=color, linestyle="none", marker="o", markersize=3,
                  label="test (at a new best)" if lone else None)
    if best is not None:
        for ax in (loss_ax, error_ax):
            ax.axvline(xs[best], color=color, linestyle=":", linewidth=1)
        error_ax.plot([xs[best]], [100 * float(rows[best]["val_error"])], color=color, marker="*", markersize=12,
                      linestyle="none", label=best_text if lone else None)
    return x_name


def draw_curves(histories: dict[str, list[dict]], path: Path, title: str) -> None:
    """One figure for one or more runs ({label: history rows}), written atomically to `path`; the loss
    axis is logarithmic when several runs are compared. matplotlib is imported here, not with the module:
    a training process that never draws (the drawing process does) does not pay for its import."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=DPI)
    loss_ax, error_ax = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(histories))]
    x_name = "epoch"
    for (label, rows), color in zip(histories.items(), colors):
        if rows:
            x_name = plot_run(loss_ax, error_ax, rows, label, color)
    compared = len(histories) > 1
    loss_ax.set(title="loss (dashed: train, solid: val)" if compared else "loss", xlabel=x_name,
                ylabel="cross-entropy")
    error_ax.set(title="error (line: val, dots: test at a new best, star: best)" if compared else "error",
                 xlabel=x_name, ylabel="error (%)")
    if compared:
        loss_ax.set_yscale("log")  # compared runs' losses often differ by orders of magnitude
    for ax in (loss_ax, error_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best" if compared else "upper right")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.86, wspace=0.18)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


# ---- the drawing process: `python -m cnnexp.engine.curves <png> <title> <interval>` ---------------
def keep_drawing(path: Path, title: str, interval: float, requests=sys.stdin, replies=sys.stdout,
          clock=time.monotonic) -> None:
    """Read history rows from `requests` (JSON lines {"seq": n, "rows": [new rows]}, then {"end": true})
    and keep the picture at `path` current, answering the last `seq` drawn on `replies`.

    A picture is drawn at most every `interval` seconds: rows that arrive sooner after the last picture
    (fast evaluations, a new best among them) wait, and are all drawn together once the interval has
    passed, so a person watching sees every row at most `interval` s late. The end is drawn at once."""
    rows, latest, ended = [], 0, False
    changed = threading.Condition()

    def read() -> None:
        nonlocal latest, ended
        for line in requests:
            message = json.loads(line)
            if message.get("end"):  # not EOF: forked DataLoader workers may hold the pipe open
                break
            with changed:
                rows.extend(message["rows"])
                latest = message["seq"]
                changed.notify()
        with changed:
            ended = True
            changed.notify()

    threading.Thread(target=read, daemon=True).start()
    drawn, last_picture = 0, -math.inf
    while True:
        with changed:
            changed.wait_for(lambda: latest > drawn or ended)
            if latest == drawn:  # ended, and everything is drawn
                return
            changed.wait_for(lambda: ended, timeout=max(0.0, last_picture + interval - clock()))
            snapshot, seq = list(rows), latest
        try:
            draw_curves({"": snapshot}, path, title)
        except OSError as exc:  # a full disk must not stop training; history.csv has the numbers
            sys.stderr.write(f"warning: could not write {path}: {exc}\n")
        drawn, last_picture = seq, clock()
        replies.write(f"{seq}\n")
        replies.flush()


if __name__ == "__main__":
    keep_drawing(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
