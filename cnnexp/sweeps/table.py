"""The summary as a table: the console (rich), summary.md, summary.csv and summary.json."""

import csv
from pathlib import Path

from rich.console import Console

from cnnexp.utils.files import write_json_atomic
from cnnexp.utils.text import WIDTH

SUMMARY_FILES = ("summary.csv", "summary.json", "summary.md", "summary.png")
STAT_METRICS = ("best_val_error", "test_error", "best_epoch", "train_seconds")
ERRORS = (("val err", "best_val_error"), ("test err", "test_error"))


def fmt(value, name: str) -> str:
    if value is None:
        return "-"
    if name.endswith("error"):
        return f"{100 * value:.2f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def mean_std(stat: dict, name: str) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{fmt(stat['mean'], name)} ± {fmt(stat['std'], name)}"


def min_max(stat: dict, name: str) -> str:
    return "-" if stat["min"] is None else f"{fmt(stat['min'], name)}–{fmt(stat['max'], name)}"


def choice_line(summary: dict) -> str | None:
    """The point the sweep picks (lowest mean of its metric), with its validation and test error beside."""
    row = next((r for r in summary["points"] if summary["best"] and r["values"] == summary["best"]), None)
    if row is None or not summary["keys"] or not summary["metric"].endswith("error"):
        return None
    point = " ".join(f"{key}={value}" for key, value in row["values"].items())
    errors = ", ".join(f"{label} {mean_std(row[name], name)} %" for label, name in ERRORS)
    return f"best by {summary['metric']}: {point}\n  {errors}"


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the console table and summary.md (errors in %)."""
    keys = summary["keys"]
    header = [*keys, "runs", "val err %", "val range", "test err %", "test range", "best epoch", "train s",
              "failed"]
    metric = summary["metric"]
    extra = metric not in STAT_METRICS
    if extra:
        header.insert(len(keys) + 1, metric)
    unfinished = any(row["unfinished"] for row in summary["points"])
    if unfinished:  # runs still going, or interrupted: finish them with sweep.dir=<this folder>
        header.append("unfinished")
    pruned = any(row.get("pruned") for row in summary["points"])
    if pruned:  # stopped early by an Optuna search
        header.append("pruned")
    cells = []
    for row in summary["points"]:
        line = [*row["values"].values(), f"{row['runs_ok']}/{row['runs_total']}",
                mean_std(row["best_val_error"], "best_val_error"), min_max(row["best_val_error"], "best_val_error"),
                mean_std(row["test_error"], "test_error"), min_max(row["test_error"], "test_error"),
                mean_std(row["best_epoch"], "best_epoch"), fmt(row["train_seconds"]["mean"], "train_seconds"),
                str(row["failed"])]
        if extra:
            line.insert(len(keys) + 1, mean_std(row[metric], metric))
        if unfinished:
            line.append(str(row["unfinished"]))
        if pruned:
            line.append(str(row["pruned"]))
        cells.append(line)
    return header, cells


CONSOLE_LEFT_OUT = ("val range", "test range")  # in summary.md and .csv, not on the console
DROPPED_FIRST = ("train s", "best epoch", "runs")  # left out, in this order, while the table is too wide


def short_keys(keys: list[str]) -> list[str]:
    """Each swept key by its shortest dotted tail that no other key shares (`lr`, `batch_size`)."""
    parts = [key.split(".") for key in keys]
    short = []
    for mine in parts:
        n = 1
        while n < len(mine) and sum(other[-n:] == mine[-n:] for other in parts) > 1:
            n += 1
        short.append(".".join(mine[-n:]))
    return short


def rich_table(summary: dict, width: int = WIDTH):
    """The console's table within `width` columns: summary.md's columns but the ranges (and `failed` when
    nothing failed), swept keys by their last names, then the least needed columns left out until it fits."""
    header, cells = table_rows(summary)
    header = short_keys(summary["keys"]) + header[len(summary["keys"]):]
    failed = any(row["failed"] for row in summary["points"])
    kept = [i for i, name in enumerate(header) if name not in CONSOLE_LEFT_OUT and (name != "failed" or failed)]
    table = console_table(summary, header, cells, kept)
    for name in DROPPED_FIRST:
        if Console(width=10 * width).measure(table).maximum <= width or name not in header:
            break
        kept.remove(header.index(name))
        table = console_table(summary, header, cells, kept)
    return table


def console_table(summary: dict, header: list[str], cells: list[list[str]], kept: list[int]):
    from rich import box
    from rich.table import Table

    table = Table(title=f"sorted by {summary['metric']}; mean ± std over seeds", box=box.SIMPLE_HEAD,
                  pad_edge=False, title_justify="left")
    keys = len(summary["keys"])
    for i in kept:
        table.add_column(header[i], justify="left" if i < keys else "right", no_wrap=True)
    for line in cells:
        table.add_row(*(line[i] for i in kept))
    return table


def markdown(summary: dict) -> str:
    header, cells = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
    note = (f"Sorted by {summary['metric']}; mean ± sample std over seeds, min–max; errors in %; "
            f"train s = mean training seconds a run; failed counts failed and diverged runs.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def write_summary(sweep_dir: Path, summary: dict) -> None:
    write_json_atomic(summary, sweep_dir / "summary.json")
    (sweep_dir / "summary.md").write_text(markdown(summary))
    counts = ["runs_ok", "runs_total", "failed", "unfinished"]
    if any(row.get("pruned") for row in summary["points"]):  # a search that pruned runs
        counts.append("pruned")
    columns = [*summary["keys"], *counts]
    columns += [f"{m}_{s}" for m in dict.fromkeys((*STAT_METRICS, summary["metric"]))
                for s in ("mean", "std", "min", "max")]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in summary["points"]:
            flat = {**row["values"], **{k: row[k] for k in counts}}
            flat |= {f"{m}_{s}": row[m][s] for m in dict.fromkeys((*STAT_METRICS, summary["metric"]))
                     for s in ("mean", "std", "min", "max")}
            writer.writerow(flat)
