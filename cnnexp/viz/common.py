"""What every picture of a model needs: the model examined as it was found, its feature-map layers by
name, a hook that catches a layer's output, grids of small images, and figures written atomically (and
to TensorBoard when asked)."""

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from cnnexp.utils.errors import UserError
from cnnexp.utils.files import atomic_path


@contextmanager
def examined(model: nn.Module):
    """The model in evaluation mode with no parameter gradients (pictures never train it); afterwards
    every module's train/eval mode and every parameter's requires_grad are put back as found."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


class LayerOutput:
    """Catches one layer's output during a forward pass (`with LayerOutput(layer) as caught: model(x)`).

    By default `value` is a copy still connected to the autograd graph (if one is being built), so an
    in-place op after the layer (`ReLU(inplace=True)`) cannot change it. With `as_leaf`, `value` is a
    fresh leaf that requires grad and the rest of the network runs on a copy of it: gradients with
    respect to the layer's output then exist even when every weight is frozen and the input needs no
    gradient (Grad-CAM). A module called twice in one pass (torchvision's BasicBlock reuses its ReLU)
    leaves the value of its last call."""

    def __init__(self, layer: nn.Module, as_leaf: bool = False):
        self.layer, self.as_leaf = layer, as_leaf
        self.value: torch.Tensor | None = None

    def __enter__(self) -> "LayerOutput":
        self.handle = self.layer.register_forward_hook(self.hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def hook(self, module, inputs, output):
        if not self.as_leaf:
            self.value = output.clone()
            return None
        self.value = output.detach().clone().requires_grad_(True)
        return self.value.clone()


def feature_maps(model: nn.Module, input_shape, device, memory_format=torch.contiguous_format) -> dict:
    """{name: (C, H, W)} of every named module whose output is an N x C x H x W map, in the order a
    forward pass finishes them (by their last call)."""
    shapes = {}

    def record(name, module, inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            shapes.pop(name, None)
            shapes[name] = tuple(output.shape[1:])

    hooks = [module.register_forward_hook(lambda m, i, o, name=name: record(name, m, i, o))
             for name, module in model.named_modules() if name]
    try:
        with examined(model), torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device).contiguous(memory_format=memory_format))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def conv_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def last_spatial_map(maps: dict) -> str:
    """The last feature map that still has a spatial extent (before global pooling and the classifier)."""
    spatial = [name for name, (_, h, w) in maps.items() if h * w > 1]
    if not spatial:
        raise UserError("this model has no feature map larger than 1x1 to draw; use larger input images")
    return spatial[-1]


def find_layers(model: nn.Module, names: list[str], maps: dict) -> dict[str, nn.Module]:
    """{name: module} for feature-map layer names; an unknown name is an error listing the valid ones."""
    modules = dict(model.named_modules())
    for name in names:
        if name not in maps:
            raise UserError(f"unknown layer '{name}'; layers with a feature map: {', '.join(maps)}")
    return {name: modules[name] for name in names}


def grid_columns(n: int, aspect: float = 1.0) -> int:
    """Columns for n cells of width/height `aspect` so the grid comes out roughly square."""
    return max(1, min(n, round(math.sqrt(n / max(aspect, 1e-3)))))


def tile(cells: np.ndarray, columns: int, gap: int = 2, fill: float = 1.0) -> np.ndarray:
    """N x H x W x 3 floats -> one (rows*(H+gap)-gap) x (cols*(W+gap)-gap) x 3 image, row-major."""
    n, h, w, c = cells.shape
    rows = math.ceil(n / columns)
    sheet = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, c), fill, dtype=np.float32)
    for i, cell in enumerate(cells):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        sheet[top:top + h, left:left + w] = cell
    return sheet


def label_cells(ax, n: int, columns: int, cell_hw: tuple[int, int], labels: list[str], gap: int = 2) -> None:
    """A small label in the top-left corner of each grid cell drawn by `tile`."""
    h, w = cell_hw
    size = 7 if columns <= 8 else 5 if columns <= 16 else 4
    for i in range(n):
        ax.text((i % columns) * (w + gap) + 0.5, (i // columns) * (h + gap) + 0.5, labels[i], fontsize=size,
                color="white", va="top", ha="left", bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5,
                                                          "linewidth": 0})


def sheet_figure(sheet: np.ndarray, title: str, max_inches: float = 12.0) -> tuple[Figure, object]:
    """A figure showing one image (a tiled grid) as large as fits in max_inches, with a title."""
    h, w = sheet.shape[:2]
    scale = max_inches / max(h, w)
    fig = Figure(figsize=(max(w * scale, 4.0), h * scale + 0.6), dpi=100)
    ax = fig.add_axes((0.01, 0.01, 0.98, (h * scale) / (h * scale + 0.6) - 0.02))
    ax.imshow(sheet, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig, ax


def rendered(fig: Figure) -> np.ndarray:
    """The figure as uint8 H x W x 3."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_picture(fig: Figure, path: Path, tensorboard=None, tag: str | None = None) -> Path:
    """Write the figure as a PNG (atomically) and, given a TensorBoardLogger, as an image under `tag`."""
    rgb = rendered(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    if tensorboard is not None:
        tensorboard.picture(tag or path.stem, rgb)
    return path
