"""`cnnexp data <build-hdf5|from-video|show> key=value ...`: the data toolbox.

Each tool's keys and defaults are in `conf/data_<tool>.yaml`; `data show` also takes any `train`
override (dataset=..., augmentation=..., experiment=...) and composes the train config with them.
"""

from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cnnexp.config.compose import compose_config, conf_dir, one_line
from cnnexp.utils.errors import UserError

HELP = "data tools: build-hdf5 (folder -> HDF5), from-video (faces -> folder), show (counts, stats, sample grid)"
TOOLS = {
    "build-hdf5": "an image folder -> one HDF5 file with a group per split and the training mean",
    "from-video": "the largest face in every k-th video frame -> out/<label>/*.png",
    "show": "counts per split and class, shape, mean/std, and a PNG grid with and without augmentation",
}


def config_path(tool: str) -> Path:
    return conf_dir() / f"data_{tool.replace('-', '_')}.yaml"


def usage() -> str:
    lines = ["usage: cnnexp data <tool> [key=value ...]", ""]
    lines += [f"  {name:<11} {text}" for name, text in TOOLS.items()]
    lines += ["", "`cnnexp data <tool> --help` lists its keys and defaults."]
    return "\n".join(lines)


def parse(tool: str, args: list[str], extra_ok: bool = False):
    """(options, other args): key=value args merged over the tool's defaults; with extra_ok, keys
    the tool does not have are handed back (train overrides for `show`) instead of refused."""
    defaults = OmegaConf.load(config_path(tool))
    mine, other = [], []
    for arg in args:
        key = arg.split("=", 1)[0]
        if "=" not in arg and not extra_ok:
            raise UserError(f"expected key=value, got '{arg}'; `cnnexp data {tool} --help` lists the keys")
        (mine if key in defaults else other).append(arg)
    if other and not extra_ok:
        raise UserError(f"unknown key '{other[0].split('=')[0]}' for `cnnexp data {tool}`; "
                        f"keys: {', '.join(defaults)}")
    try:
        return OmegaConf.merge(defaults, OmegaConf.from_dotlist(mine)), other
    except OmegaConfBaseException as exc:
        raise UserError(f"bad value for `cnnexp data {tool}`: {one_line(exc)}") from exc


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def build_hdf5(args: list[str], console: Console) -> None:
    from cnnexp.data.tools.build_hdf5 import build_hdf5 as build
    from cnnexp.data.tools.show import counts_table

    opts, _ = parse("build-hdf5", args)
    with progress_bar(console) as progress:
        report = build(opts, progress)
    console.print(f"wrote {report.out} ({report.out.stat().st_size / 2**20:.1f} MiB)", highlight=False, soft_wrap=True)
    console.print(counts_table(report.names, report.counts))
    mean = ", ".join(f"{v:.2f}" for v in report.mean)
    std = ", ".join(f"{v:.2f}" for v in report.std)
    console.print(f"images {'x'.join(map(str, report.shape))} (H x W x C) uint8; train mean [{mean}], std [{std}] "
                  f"-> {report.out.with_name(report.out.stem + '_mean.json')}; {report.skipped} files skipped; "
                  f"{report.seconds:.1f} s", highlight=False, soft_wrap=True)


def from_video(args: list[str], console: Console) -> None:
    from cnnexp.data.tools.video import faces_from_video

    opts, _ = parse("from-video", args)
    with progress_bar(console) as progress:
        report = faces_from_video(opts, progress)
    console.print(f"{report.frames} frames, {report.read} read (every {opts.every}), {report.faces} with a face, "
                  f"{report.written} crops of {opts.width}x{opts.height} written to {report.folder}",
                  highlight=False, soft_wrap=True)


def show(args: list[str], console: Console) -> None:
    from cnnexp.data.tools.show import describe, sample_grid

    opts, overrides = parse("show", args, extra_ok=True)
    cfg = compose_config("train", overrides)
    out = Path(opts.out or f"outputs/data/{cfg.dataset.name}_samples.png")
    data, summary = describe(cfg)
    console.print(summary)
    sample_grid(cfg, data, opts, out)
    console.print(f"sample grid: {out}", highlight=False, soft_wrap=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    tool, args = argv[0], argv[1:]
    if tool not in TOOLS:
        raise UserError(f"unknown data tool '{tool}'; choose one of: {', '.join(TOOLS)}")
    if "--help" in args or "-h" in args:
        print(f"cnnexp data {tool}: {TOOLS[tool]}\n\n{config_path(tool).read_text()}")
        return 0
    {"build-hdf5": build_hdf5, "from-video": from_video, "show": show}[tool](args, Console())
    return 0
