"""summary.png: the metric against each swept key, mean over seeds with std bars and a min-max band."""

import statistics
from pathlib import Path


def plot_summary(rows: list[dict], keys: list[str], orders: dict, metric: str, path: Path) -> None:
    """One panel per swept key: the metric's mean over seeds against the key's values, the std as
    error bars and min–max as a band; one line per value of the other key when there are two, else
    the mean over the other keys' points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys or ["(all runs)"]
    scale, unit = (100, " %") if metric.endswith("error") else (1, "")
    fig, axes = plt.subplots(1, len(keys), figsize=(max(6, 5 * len(keys)), 4.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        others = [k for k in keys if k != key]
        series_key = others[0] if len(others) == 1 else None
        series = orders[series_key] if series_key else [None]
        x_values = orders.get(key, ["all"])
        for label in series:
            plot_series(ax, rows, key, x_values, series_key, label, metric, scale)
        ax.set_xticks(range(len(x_values)), x_values, rotation=30 if len(x_values) > 6 else 0)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric}{unit}")
        ax.grid(alpha=0.3)
        if series_key:
            ax.legend(title=series_key, fontsize="small")
    fig.suptitle(f"{metric}: mean over seeds; bars: std, band: min–max", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_series(ax, rows, key, x_values, series_key, label, metric, scale) -> None:
    xs, mean, std, low, high = [], [], [], [], []
    for i, value in enumerate(x_values):
        members = [r for r in rows if r["values"].get(key, "all") == value
                   and (series_key is None or r["values"][series_key] == label) and r[metric]["mean"] is not None]
        if not members:
            continue
        xs.append(i)
        mean.append(scale * statistics.fmean(r[metric]["mean"] for r in members))
        std.append(scale * statistics.fmean(r[metric]["std"] for r in members))
        low.append(scale * min(r[metric]["min"] for r in members))
        high.append(scale * max(r[metric]["max"] for r in members))
    if not xs:
        return
    line = ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=label if series_key else None)
    ax.fill_between(xs, low, high, alpha=0.15, color=line[0].get_color())
