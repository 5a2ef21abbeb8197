"""Intermediate activations: for one image, every channel of a layer's feature map as a labelled grid
(the TF2 walkthrough's activation grids)."""

from contextlib import ExitStack

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from cnnexp.viz.common import LayerOutput, examined, grid_columns, label_cells, sheet_figure, tile


def layer_activations(model: nn.Module, inputs: torch.Tensor, layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """{name: C x H x W feature map} of each layer for one model input (1 x C x H x W)."""
    with examined(model), torch.no_grad(), ExitStack() as stack:
        caught = {name: stack.enter_context(LayerOutput(layer)) for name, layer in layers.items()}
        model(inputs)
    return {name: c.value[0].float().cpu() for name, c in caught.items()}


def channel_cells(maps: torch.Tensor) -> np.ndarray:
    """C x H x W -> C x H x W x 3 colours (viridis), each channel scaled to its own range; a flat channel
    (a dead unit) comes out as the colour map's bottom."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    scaled = ((maps - low) / (high - low).clamp_min(1e-12)).numpy()
    return colormaps["viridis"](scaled)[..., :3].astype(np.float32)


def activations_figure(maps: torch.Tensor, title: str) -> Figure:
    """Every channel of one feature map, labelled with its index."""
    channels, h, w = maps.shape
    columns = grid_columns(channels, w / h)
    fig, ax = sheet_figure(tile(channel_cells(maps), columns), title)
    label_cells(ax, channels, columns, (h, w), [str(i) for i in range(channels)])
    return fig
