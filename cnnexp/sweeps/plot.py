"""summary.png: the metric against each swept key, mean over seeds with std bars and a min-max band; the
test error of the same runs dashed beside the validation error that picks. Numeric keys on a numeric
axis (logarithmic where the values span more than a decade), others one tick per value."""

import statistics
from pathlib import Path

VALIDATION = "best_val_error"
TEST = "test_error"


def numbers(values: list[str]) -> list[float] | None:
    """The values as numbers when every one is a number (not a bool), else None."""
    try:
        return [float(v) for v in values] if values and not {"true", "false"} & set(values) else None
    except ValueError:
        return None


def is_log(positions: list[float]) -> bool:
    """Positive values spanning more than a decade: a log axis."""
    return min(positions) > 0 and max(positions) / min(positions) > 10


def place(ax, key: str, x_values: list[str]) -> list[float]:
    """Set up the x axis of a key; the x position of each value."""
    positions = numbers(x_values)
    if positions is None:
        ax.set_xticks(range(len(x_values)), x_values, rotation=30 if len(x_values) > 6 else 0)
        return list(range(len(x_values)))
    if is_log(positions):
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(positions, x_values, rotation=30 if len(x_values) > 6 else 0)
    return positions


def plot_summary(rows: list[dict], keys: list[str], orders: dict, metric: str, path: Path) -> None:
    """One panel per swept key: the metric's mean over seeds against the key's values, the std as
    error bars and min–max as a band; one line per value of the other key when there are two, else
    the mean over the other keys' points. Sorted by validation error, the test error is drawn dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys or ["(all runs)"]
    scale, unit = (100, " %") if metric.endswith("error") else (1, "")
    beside = TEST if metric == VALIDATION else None
    fig, axes = plt.subplots(1, len(keys), figsize=(max(6, 5 * len(keys)), 4.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        others = [k for k in keys if k != key]
        series_key = others[0] if len(others) == 1 else None
        x_values = orders.get(key, ["all"])
        positions = place(ax, key, x_values)
        for label in orders[series_key] if series_key else [None]:
            members = [r for r in rows if series_key is None or r["values"][series_key] == label]
            colour = plot_series(ax, members, key, x_values, positions, metric, scale, label)
            if beside and colour:
                plot_series(ax, members, key, x_values, positions, beside, scale, None, colour)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric}{unit}")
        ax.grid(alpha=0.3)
        if series_key:
            ax.legend(title=series_key, fontsize="small")
    dashed = f"; dashed: {TEST} of the same runs" if beside else ""
    fig.suptitle(f"{metric}: mean over seeds; bars: std, band: min–max{dashed}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_series(ax, rows, key, x_values, positions, metric, scale, label, colour=None) -> str | None:
    """One line of a panel: solid with its std bars and min–max band, or (given the colour of the line it
    goes with) dashed without them. The line's colour, or None when it has no points."""
    xs, mean, std, low, high = [], [], [], [], []
    for value, x in zip(x_values, positions):
        members = [r for r in rows if r["values"].get(key, "all") == value and r[metric]["mean"] is not None]
        if not members:
            continue
        xs.append(x)
        mean.append(scale * statistics.fmean(r[metric]["mean"] for r in members))
        std.append(scale * statistics.fmean(r[metric]["std"] for r in members))
        low.append(scale * min(r[metric]["min"] for r in members))
        high.append(scale * max(r[metric]["max"] for r in members))
    if not xs:
        return None
    if colour is not None:
        ax.plot(xs, mean, linestyle="--", marker=".", color=colour, alpha=0.7)
        return colour
    line = ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.fill_between(xs, low, high, alpha=0.15, color=line[0].get_color())
    return line[0].get_color()
