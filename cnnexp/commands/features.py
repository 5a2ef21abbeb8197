"""`cnnexp features`: the features of every image of each split, from a trained run or a registry
model, written to one HDF5 file (see cnnexp/features/)."""

from pathlib import Path

from rich.table import Table

from cnnexp.runner.app import app_main
from cnnexp.utils.errors import UserError

# torch, the data, features and inference layers are imported where used: `--help` and `--cfg job` go without.

CONFIG_NAME = "features"
HELP = "features of a run or registry model for every image -> HDF5"
FLAGS = {"--tencrop": "tencrop=true"}
READ_ONLY = True  # composed once, run without a Hydra job: it writes only the file out= names (runner/app.py)
main = app_main("features", __name__)  # cnnexp features ... -> this module's Hydra app


def run(cfg, overrides: list[str]) -> dict | None:
    from cnnexp.engine.build import set_threads
    from cnnexp.features.extract import extract, file_attrs
    from cnnexp.features.layers import choose_layer
    from cnnexp.inference.scoring import require_crops

    listing = cfg.layer == "list"
    target = None if listing else output_path(cfg)
    set_threads(cfg.device.threads)
    source, data = load_source(cfg, overrides)
    in_shape = source.pipeline.augmentation.out_shape
    if listing:
        return print_layers(source.model, in_shape)
    layer = choose_layer(source.model, in_shape, cfg.layer, cfg.pool, cfg.max_features)
    splits = chosen_splits(cfg, data)
    tencrop = None
    if cfg.tencrop:
        require_crops(source.pipeline, source.image_shape)
        tencrop = {"mirror": cfg.tencrop_mirror}
    attrs = file_attrs(source, data, layer, in_shape, tencrop)
    writer_args = {"path": target, "attrs": attrs, "buffer_rows": cfg.write_buffer}
    done = extract(source, data, splits, writer_args, layer, cfg.batch_size, tencrop)
    return report(target, attrs, done)


def output_path(cfg) -> Path:
    if not cfg.out:
        raise UserError("say where to write the features: out=<file.h5>")
    from cnnexp.data.sources.folder import user_path

    path = user_path(cfg.out, "out")
    if path.exists() and not cfg.overwrite:
        raise UserError(f"out={cfg.out} exists; choose another file name, or add overwrite=true to replace it")
    if path.is_dir():
        raise UserError(f"out={cfg.out} is a folder; give a file name such as {Path(cfg.out) / 'features.h5'}")
    return path


def load_source(cfg, overrides: list[str]):
    """The model and data the features come from; `overrides` (the command line's) name the run's
    dataset keys to change."""
    from cnnexp.features.extract import load_dataset, source_from_model, source_from_run
    from cnnexp.inference.open_run import dataset_overrides, open_run

    if cfg.model is not None:
        data = load_dataset(cfg.dataset, cfg.seed)
        return source_from_model(cfg, data), data
    restored = open_run(cfg.run, cfg.checkpoint, cfg.which, cfg.device, dataset_overrides(cfg, overrides))
    source = source_from_run(restored, cfg.dataset, cfg.run)
    return source, load_dataset(source.dataset_cfg, cfg.seed, source.image_shape)


def chosen_splits(cfg, data) -> list[str]:
    from cnnexp.utils.choices import SPLITS

    asked = [str(s) for s in cfg.splits]
    unknown = [s for s in asked if s not in SPLITS]
    if unknown or not asked:
        raise UserError(f"splits={asked} must list some of: {', '.join(SPLITS)}")
    present = [s for s in asked if s in data.splits and len(data.splits[s])]
    if not present:
        raise UserError(f"the dataset has none of the splits {asked}; it has: {', '.join(data.splits)}")
    return present


def print_layers(model, in_shape) -> None:
    from cnnexp.features.layers import layer_listing
    from cnnexp.inference.reports import console

    table = Table(box=None, pad_edge=False)
    for name in ("layer", "type", "output (one image)"):
        table.add_column(name)
    for row in layer_listing(model, in_shape):
        table.add_row(*row)
    console().print(table)


def report(target: Path, attrs: dict, done) -> dict:
    from cnnexp.inference.reports import console

    total = sum(done.counts.values())
    screen = console()
    screen.print(f"features: {attrs['model']}, {attrs['layer_description']} -> {attrs['feature_dim']} floats an image "
                 f"(input {'x'.join(map(str, attrs['input_size']))}{', ten-crop mean' if attrs['tencrop'] else ''})")
    if attrs.get("weights_loaded"):
        screen.print(f"weights {attrs['weights_loaded']}")
    counts = ", ".join(f"{name} {n:,}" for name, n in done.counts.items())
    screen.print(f"{counts} images in {done.seconds:.1f} s ({total / max(done.seconds, 1e-9):,.0f} img/s)")
    screen.print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")
    return {"path": str(target), "counts": done.counts, "seconds": done.seconds, "dim": attrs["feature_dim"]}
