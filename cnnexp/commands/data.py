"""`cnnexp data <build-hdf5|build-shards|from-video|show> key=value ...`: the data toolbox.

Each tool is a Hydra app over its own primary config, `conf/data_<tool>.yaml`, that makes no job folder
when it runs once (it writes only where it is told); `data show` includes the
train config, so it takes any train override (dataset=..., augmentation=..., experiment=...).
"""

from pathlib import Path
from types import SimpleNamespace

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cnnexp.runner.app import tools_main

HELP = "data tools: build-hdf5, build-shards (tar shards), from-video, show"


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def build_hdf5(opts) -> None:
    from cnnexp.data.tools.build_hdf5 import build_hdf5 as build
    from cnnexp.data.tools.show import counts_table

    console = Console()
    with progress_bar(console) as progress:
        report = build(opts, progress)
    console.print(f"wrote {report.out} ({report.out.stat().st_size / 2**20:.1f} MiB)", highlight=False, soft_wrap=True)
    console.print(counts_table(report.names, report.counts))
    mean = ", ".join(f"{v:.2f}" for v in report.mean)
    std = ", ".join(f"{v:.2f}" for v in report.std)
    console.print(f"images {'x'.join(map(str, report.shape))} (H x W x C) uint8; train mean [{mean}], std [{std}] "
                  f"-> {report.out.with_name(report.out.stem + '_mean.json')}; {report.skipped} files skipped; "
                  f"{report.seconds:.1f} s", highlight=False, soft_wrap=True)


def build_shards(opts) -> None:
    from cnnexp.data.tools.build_shards import build_shards as build
    from cnnexp.data.tools.show import counts_table

    console = Console()
    with progress_bar(console) as progress:
        report = build(opts, progress)
    console.print(f"wrote {report.shards} shards and shards.json to {report.out} ({report.bytes / 2**20:.1f} MiB); "
                  f"{report.skipped} files skipped; {report.seconds:.1f} s", highlight=False, soft_wrap=True)
    console.print(counts_table(report.names, report.counts))
    console.print(f"train from them with: cnnexp train dataset=shards dataset.path={report.out}", highlight=False,
                  soft_wrap=True)


def from_video(opts) -> None:
    from cnnexp.data.tools.video import faces_from_video

    console = Console()
    with progress_bar(console) as progress:
        report = faces_from_video(opts, progress)
    console.print(f"{report.frames} frames, {report.read} read (every {opts.every}), {report.faces} with a face, "
                  f"{report.written} crops of {opts.width}x{opts.height} written to {report.folder}",
                  highlight=False, soft_wrap=True)


def show(cfg) -> None:
    """`cfg` is the train config (dataset, augmentation, ...) plus the keys of conf/data_show.yaml."""
    from cnnexp.data.tools.show import describe, sample_grid

    console = Console()
    out = Path(cfg.out or f"outputs/data/{cfg.dataset.name}_samples.png")
    data, summary = describe(cfg)
    console.print(summary)
    sample_grid(cfg, data, out)
    console.print(f"sample grid: {out}", highlight=False, soft_wrap=True)


def tool(config_name: str, run, help_line: str) -> SimpleNamespace:
    """A data tool as a command: it writes only where it is told, so run once it is no Hydra job (composed
    once, no job folder: see runner/app.py)."""
    return SimpleNamespace(CONFIG_NAME=config_name, READ_ONLY=True, run=lambda cfg, overrides: run(cfg),
                           HELP=help_line)


TOOLS = {
    "build-hdf5": tool("data_build_hdf5", build_hdf5, "an image folder -> one HDF5 file (a group per split, train mean)"),
    "build-shards": tool("data_build_shards", build_shards,
                         "an image folder -> WebDataset tar shards (for dataset=shards)"),
    "from-video": tool("data_from_video", from_video, "the largest face in every k-th video frame -> out/<label>/*.png"),
    "show": tool("data_show", show, "counts per split and class, mean/std, a grid of augmented samples"),
}
main = tools_main("data", TOOLS)  # cnnexp data <tool> ... -> the tool's Hydra app
