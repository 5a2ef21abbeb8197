"""What the filters respond to: the first conv layer's kernels drawn as images (RGB for RGB input),
and, for any layer, the input pattern that maximises each chosen channel's mean activation, found by
gradient ascent from noise as the keras-io recipe does (normalised gradients, a fixed number of
steps), with random jitter and a periodic Gaussian blur so the patterns are not high-frequency noise
(the regularisation of Mordvintsev et al.'s feature visualisation)."""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from matplotlib.figure import Figure
from torch import nn

from cnnexp.viz.common import LayerOutput, examined, grid_columns, label_cells, sheet_figure, tile

KERNEL_CELL = 24  # pixels a kernel is enlarged to, so a 5x5 kernel is visible


@dataclass
class AscentSettings:
    steps: int = 40  # gradient steps
    lr: float = 1.0  # pixels (0..255 units) per step, with the gradient scaled to unit RMS
    jitter: int = 2  # the image is shifted by up to this many pixels before each step
    blur: float = 0.6  # sigma of the Gaussian blur applied every `blur_every` steps; 0 = none
    blur_every: int = 4
    seed: int = 0


@dataclass
class Ascent:
    patterns: torch.Tensor  # float N x C x H x W in 0..255, one per channel
    start: torch.Tensor  # N: each channel's mean activation on the starting noise
    end: torch.Tensor  # N: and on the final pattern


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def kernels_figure(conv: nn.Conv2d, title: str) -> Figure:
    """out x in x k x k weights as out small images: RGB when there are 3 input channels, else the
    mean over input channels in grey; each kernel scaled to its own range (zero is not mid-grey)."""
    weights = conv.weight.detach().float().cpu()
    if weights.shape[1] != 3:
        weights = weights.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    flat = weights.flatten(1)
    low, high = flat.min(1).values[:, None, None, None], flat.max(1).values[:, None, None, None]
    scaled = (weights - low) / (high - low).clamp_min(1e-12)
    k_h, k_w = scaled.shape[-2:]
    factor = max(1, KERNEL_CELL // max(k_h, k_w))
    cells = scaled.repeat_interleave(factor, 2).repeat_interleave(factor, 3).permute(0, 2, 3, 1).numpy()
    columns = grid_columns(len(cells))
    fig, ax = sheet_figure(tile(cells, columns), title, max_inches=8.0)
    label_cells(ax, len(cells), columns, cells.shape[1:3], [str(i) for i in range(len(cells))])
    return fig


def channel_means(caught: LayerOutput, channels: torch.Tensor) -> torch.Tensor:
    """Image i's mean activation of channel channels[i] at the caught layer."""
    value = caught.value
    return value[torch.arange(len(channels), device=value.device), channels.to(value.device)].flatten(1).mean(1)


def gradient_ascent(model: nn.Module, layer: nn.Module, channels: list[int], input_shape, to_model_input,
                    device, settings: AscentSettings = AscentSettings()) -> Ascent:
    """One pattern per channel, all ascended together (image i drives channel channels[i]).

    `to_model_input` maps float 0..255 images to what the model takes (the run's normalisation and
    memory format). Patterns live in pixel units and are clamped to 0..255, so they are valid images."""
    generator = torch.Generator().manual_seed(settings.seed)
    x = (128 + 20 * torch.randn(len(channels), *input_shape, generator=generator)).clamp(0, 255).to(device)
    wanted = torch.tensor(channels)
    shifts = torch.randint(-settings.jitter, settings.jitter + 1, (settings.steps, 2), generator=generator).tolist()
    with examined(model), torch.enable_grad(), LayerOutput(layer) as caught:
        start = objective(model, x, to_model_input, caught, wanted)
        for step, (dy, dx) in enumerate(shifts, 1):
            shifted = x.roll((dy, dx), (2, 3)).requires_grad_(True)
            model(to_model_input(shifted))
            (grad,) = torch.autograd.grad(channel_means(caught, wanted).sum(), shifted)
            rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)[:, None, None, None]
            x = (shifted.detach() + settings.lr * grad / rms).roll((-dy, -dx), (2, 3))
            if settings.blur > 0 and step % settings.blur_every == 0:
                x = blurred(x, settings.blur)
            x = x.clamp(0, 255)
        end = objective(model, x, to_model_input, caught, wanted)
    return Ascent(x.cpu(), start.cpu(), end.cpu())


def objective(model, x, to_model_input, caught: LayerOutput, wanted: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        model(to_model_input(x))
        return channel_means(caught, wanted)


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * math.ceil(2 * sigma) + 1
    return TF.gaussian_blur(x, [size, size], [sigma, sigma])


def patterns_figure(ascent: Ascent, channels: list[int], title: str) -> Figure:
    """The patterns, each stretched to its own range, labelled with their channel."""
    patterns = ascent.patterns
    flat = patterns.flatten(1)
    low, high = flat.min(1).values[:, None, None, None], flat.max(1).values[:, None, None, None]
    scaled = ((patterns - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    cells = np.repeat(scaled, 3, axis=3) if scaled.shape[3] == 1 else scaled
    h, w = cells.shape[1:3]
    columns = grid_columns(len(cells), w / h)
    fig, ax = sheet_figure(tile(cells, columns), title)
    label_cells(ax, len(cells), columns, (h, w), [str(c) for c in channels])
    return fig
