"""`cnnexp viz <curves|activations|filters|gradcam> key=value ...`: pictures of trained runs.

The first argument picks the picture; it becomes the Hydra group choice `viz=<picture>`, whose file in
conf/viz/ adds that picture's keys to conf/viz.yaml, so `--help` and `--cfg job` show exactly the keys
that apply. The pictures themselves are drawn by cnnexp/viz/ (one module per kind).
"""

from __future__ import annotations

import glob
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cnnexp.runner.app import launch
from cnnexp.utils import jobdirs
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import claim_run_dir
from cnnexp.utils.text import fold

if TYPE_CHECKING:  # torch and the drawing modules are imported where used: `--help` and `--cfg job` go without
    import torch

    from cnnexp.engine.assemble import Restored

CONFIG_NAME = "viz"
READ_ONLY = True  # composed once, run without a Hydra job (see runner/app.py)
HELP = "pictures of a trained run: curves, activations, filters, gradcam"
PICTURES = {
    "curves": "loss and error by epoch of one or more runs (run=<run>,<run>)",
    "activations": "every channel of each conv layer's feature map for one image",
    "filters": "first-layer kernels, and each channel's preferred input pattern",
    "gradcam": "Grad-CAM maps of the predicted (or target=) class over images",
}
LIST_KEYS = ("layers", "channels")  # `layers=a,b` means a list here, not a sweep
MAX_CHANNELS = 64  # patterns drawn when channels=null
BATCH = 32  # images per Grad-CAM pass


def usage() -> str:
    lines = ["usage: cnnexp viz <picture> [key=value ...]", ""]
    lines += [f"  {name:<12} {text}" for name, text in PICTURES.items()]
    lines += ["", "`cnnexp viz <picture> --help` lists its keys; `--cfg job` the resolved config."]
    return fold("\n".join(lines))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    picture, args = argv[0], argv[1:]
    if picture not in PICTURES:
        raise UserError(f"unknown picture '{picture}'; choose one of: {', '.join(PICTURES)}")
    keys = LIST_KEYS + (("run",) if picture == "curves" else ())
    args = [as_list(arg, keys) for arg in args]
    first_override = next((i for i, arg in enumerate(args) if "=" in arg and not arg.startswith("-")), len(args))
    args.insert(first_override, f"viz={picture}")  # beside the other overrides, so `--cfg job` may come first
    return launch("viz", sys.modules[__name__], args)


def as_list(arg: str, keys: tuple[str, ...]) -> str:
    """`run=a,b` -> `run=['a','b']`: Hydra would read an unbracketed comma list as a sweep."""
    key, _, value = arg.partition("=")
    if key not in keys or "," not in value or value[:1] in "[('\"":
        return arg
    return f"{key}=[{','.join(repr(item) for item in value.split(','))}]"


def check(cfg):
    """The picture's keys typed (its schema in cnnexp/schemas/commands.py) and range-checked: the config
    the picture reads."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from cnnexp.runner.compose import one_line
    from cnnexp.schemas import PICTURE_SCHEMAS, typed

    if cfg.picture not in PICTURES:
        raise UserError(f"say which picture: cnnexp viz <{'|'.join(PICTURES)}> ...")
    try:
        settings = OmegaConf.merge(OmegaConf.structured(PICTURE_SCHEMAS[cfg.picture]), cfg)
    except OmegaConfBaseException as exc:
        raise UserError(f"{exc.full_key}: {one_line(exc)}") from exc
    typed(settings)
    return settings


def run(cfg, overrides: list[str]) -> None:
    cfg = check(cfg)
    if cfg.picture == "curves":
        curves(cfg)
        return
    restored = restored_run(cfg, overrides)
    {"activations": activations, "filters": filters, "gradcam": gradcam}[cfg.picture](cfg, restored)


# ---- shared ------------------------------------------------------------------------------------
def restored_run(cfg, overrides: list[str]) -> Restored:
    from cnnexp.inference.open_run import dataset_overrides, open_run

    return open_run(cfg.run, cfg.checkpoint, cfg.which, cfg.device, dataset_overrides(cfg, overrides), cfg.get("resize"))


def run_home(cfg, restored: Restored) -> Path:
    """The run folder the pictures belong to (the checkpoint's when only checkpoint= is given)."""
    return Path(cfg.run).expanduser() if cfg.run is not None else jobdirs.checkpoint_home(restored.checkpoint_path)


def out_dir(cfg, home: Path) -> Path:
    return Path(cfg.out).expanduser() if cfg.out is not None else home / "viz"


@contextmanager
def tensorboard_of(cfg, home: Path):
    """The run's TensorBoard events with tensorboard=true, else None."""
    if not cfg.tensorboard:
        yield None
        return
    from cnnexp.engine.loggers import TensorBoardLogger

    logger = TensorBoardLogger(home)
    try:
        yield logger
    finally:
        logger.close()


def model_input(restored: Restored, images: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W at the run's image size -> what the model takes, as the run evaluated."""
    return restored.pipeline(images.to(restored.device), train=False)


def layer_maps(restored: Restored) -> dict:
    from cnnexp.viz.common import feature_maps

    pipeline = restored.pipeline
    return feature_maps(restored.model, pipeline.augmentation.out_shape, restored.device, pipeline.memory_format)


def names(value, key: str) -> list:
    """A config value given as one item or a list."""
    if value is None:
        return []
    items = list(value) if not isinstance(value, (str, int)) else [value]
    if not items:
        raise UserError(f"{key}=[] names nothing; leave it out for the default")
    return items


def wrote(path: Path, note: str = "") -> None:
    print(f"wrote {path}{note}", flush=True)


def described(restored: Restored) -> str:
    return f"{restored.config.model.name} on {restored.config.dataset.name}"


# ---- the pictures ------------------------------------------------------------------------------
def curves(cfg) -> None:
    import numpy as np
    from PIL import Image

    from cnnexp.viz.curves import compare_curves

    runs = [Path(p) for item in names(cfg.run, "run") for p in expand_runs(str(item))]
    if not runs:
        raise UserError("say which runs: run=<train run folder>[,<run>...]")
    home = runs[0] if len(runs) == 1 else None
    folder = Path(cfg.out).expanduser() if cfg.out is not None else (
        home / "viz" if home else Path(claim_run_dir("outputs/viz")))
    path = compare_curves(runs, folder / "curves.png")
    for run_dir in runs if cfg.tensorboard else []:
        with tensorboard_of(cfg, run_dir) as tensorboard:
            tensorboard.picture("viz/curves", np.asarray(Image.open(path).convert("RGB")))
    wrote(path)


def expand_runs(text: str) -> list[Path]:
    if any(char in text for char in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(Path(text).expanduser())) if Path(p, "history.csv").is_file())
        if not found:
            raise UserError(f"run={text} matches no train run folders (folders with a history.csv)")
        return found
    path = Path(text).expanduser()
    if not path.is_dir():
        raise UserError(f"run={text} is not a folder; give train run folders such as outputs/train/<run>")
    return [path]


def activations(cfg, restored: Restored) -> None:
    from cnnexp.viz.activations import activations_figure, layer_activations
    from cnnexp.viz.common import conv_layers, find_layers, save_picture
    from cnnexp.viz.sources import pick_images

    maps = layer_maps(restored)
    layers = find_layers(restored.model, [str(n) for n in names(cfg.layers, "layers")] or conv_layers(restored.model),
                         maps)
    if not layers:
        raise UserError(f"model {restored.config.model.name} has no conv layer; name layers=[...] from: "
                        f"{', '.join(maps)}")
    pictures = pick_images(cfg.image, restored)
    home = run_home(cfg, restored)
    with tensorboard_of(cfg, home) as tensorboard:
        for picked in pictures:
            with restored.precision.autocast():
                caught = layer_activations(restored.model, model_input(restored, picked.image[None]), layers)
            for name, feature_map in caught.items():
                c, h, w = feature_map.shape
                title = f"{picked.name}: {name}, {c} channels of {h}x{w} ({described(restored)})"
                path = out_dir(cfg, home) / f"activations-{picked.name}-{name}.png"
                wrote(save_picture(activations_figure(feature_map, title), path, tensorboard,
                                   f"viz/activations/{picked.name}/{name}"))


def filters(cfg, restored: Restored) -> None:
    from cnnexp.viz.common import conv_layers, find_layers, save_picture
    from cnnexp.viz.filters import AscentSettings, first_conv, gradient_ascent, kernels_figure, patterns_figure

    model, pipeline = restored.model, restored.pipeline
    convs = conv_layers(model)
    if not convs:
        raise UserError(f"model {restored.config.model.name} has no conv layer to draw")
    maps = layer_maps(restored)
    layer_name = cfg.layer if cfg.layer is not None else convs[-1]
    layer = find_layers(model, [layer_name], maps)[layer_name]
    channels = chosen_channels(cfg, maps[layer_name][0])
    settings = AscentSettings(steps=cfg.steps, lr=cfg.lr, jitter=cfg.jitter, blur=cfg.blur,
                              blur_every=cfg.blur_every, seed=cfg.seed)
    home = run_home(cfg, restored)
    with tensorboard_of(cfg, home) as tensorboard:
        conv_name, conv = first_conv(model)
        size = "x".join(map(str, conv.kernel_size))
        kernels = kernels_figure(conv, f"{conv_name}: {conv.out_channels} kernels of {size} ({described(restored)})")
        wrote(save_picture(kernels, out_dir(cfg, home) / f"kernels-{conv_name}.png", tensorboard,
                           f"viz/kernels/{conv_name}"))
        with restored.precision.autocast():
            ascent = gradient_ascent(model, layer, channels, pipeline.augmentation.out_shape, normalised(pipeline),
                                     restored.device, settings)
        title = (f"{layer_name}: input patterns maximising each channel's mean activation "
                 f"({settings.steps} steps, {described(restored)})")
        path = save_picture(patterns_figure(ascent, channels, title), out_dir(cfg, home) / f"patterns-{layer_name}.png",
                            tensorboard, f"viz/patterns/{layer_name}")
    wrote(path, f"  (mean activation, median over channels: {ascent.start.median():.3g} -> {ascent.end.median():.3g})")


def normalised(pipeline):
    """float 0..255 images -> model input with the run's normalisation (no crop: patterns have the input's size)."""
    def to_model_input(images: torch.Tensor) -> torch.Tensor:
        return pipeline.normalizer(images).contiguous(memory_format=pipeline.memory_format)
    return to_model_input


def chosen_channels(cfg, count: int) -> list[int]:
    wanted = names(cfg.channels, "channels") or list(range(min(count, MAX_CHANNELS)))
    for channel in wanted:
        if not isinstance(channel, int) and not str(channel).isdigit() or not 0 <= int(channel) < count:
            raise UserError(f"channels: {channel!r} is not a channel of this layer; use 0 to {count - 1}")
    return [int(c) for c in wanted]


def gradcam(cfg, restored: Restored) -> None:
    import torch

    from cnnexp.viz.common import find_layers, last_spatial_map, save_picture
    from cnnexp.viz.gradcam import grad_cam, gradcam_figure, top_guesses
    from cnnexp.viz.sources import pick_images

    maps = layer_maps(restored)
    layer_name = cfg.layer if cfg.layer is not None else last_spatial_map(maps)
    layer = find_layers(restored.model, [layer_name], maps)[layer_name]
    where = layer_description(layer_name, layer, maps[layer_name])
    target = target_class(cfg, restored.class_names)
    alpha, topk = cfg.alpha, cfg.topk
    pictures = pick_images(cfg.image, restored)
    home = run_home(cfg, restored)
    with tensorboard_of(cfg, home) as tensorboard:
        for start in range(0, len(pictures), BATCH):
            chunk = pictures[start:start + BATCH]
            images = torch.stack([p.image for p in chunk])
            classes = None if target is None else torch.full((len(chunk),), target)
            with restored.precision.autocast():
                result = grad_cam(restored.model, model_input(restored, images), layer, classes)
            views = restored.pipeline.views(images, train=False).round().clamp(0, 255).to(torch.uint8)
            for i, picked in enumerate(chunk):
                explained = restored.class_names[result.classes[i]]
                guesses = top_guesses(result.probs[i], restored.class_names, topk)
                title = f"{picked.name}: Grad-CAM of '{explained}' at {where} ({described(restored)})"
                figure = gradcam_figure(views[i], result.maps[i], title, guesses, alpha)
                name = f"{picked.name}-{file_part(explained)}"  # one picture per image and explained class
                wrote(save_picture(figure, out_dir(cfg, home) / f"gradcam-{name}.png", tensorboard,
                                   f"viz/gradcam/{name}"), f"  {guesses}")


def layer_description(name: str, module, shape) -> str:
    """A layer as a person reads it: `features.5 (Tanh, 50x11x8 maps)`, not a bare module index."""
    label = f"layer {name}" if name.isdigit() else name
    return f"{label} ({type(module).__name__}, {'x'.join(map(str, shape))} maps)"


def file_part(text: str) -> str:
    """A class name as part of a file name: runs of characters other than letters, digits, `.`, `_` and
    `-` become one `_`, none at the ends (an age group `(38, 43)` -> `38_43`)."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "class"


def target_class(cfg, class_names: list[str]) -> int | None:
    """None for target=top, else the index of the named class."""
    target = cfg.target
    if target == "top":
        return None
    if target not in class_names:
        shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
        raise UserError(f"target={target} is not a class of this run; use top or one of: {shown}")
    return class_names.index(target)
