"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies, as seen by one
feature-map layer: the layer's channels weighted by the mean gradient of the class score over each
channel, summed, rectified, scaled to 0..1 and upsampled to the input.

Written here rather than taken from pytorch-grad-cam (whose OpenCV dependency would have fitted):
that library puts the model in eval mode for good, accumulates gradients into the parameters and
needs an extra switch for frozen weights, while the issue asks for the model to be left exactly as
found. Catching the layer's output as a fresh leaf (see `LayerOutput`) gives the gradient with
frozen weights, with in-place ReLUs after the layer, and without touching any parameter's `.grad`.
"""

import textwrap
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from cnnexp.viz.common import LayerOutput, examined


@dataclass
class CamResult:
    maps: torch.Tensor  # N x H x W in 0..1, at the input's size
    probs: torch.Tensor  # N x K softmax of the model's output
    classes: torch.Tensor  # N: the class each map explains


def grad_cam(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
             classes: torch.Tensor | None = None) -> CamResult:
    """Grad-CAM of `classes` (default: each input's predicted class) at `layer`, for model inputs N x C x H x W."""
    with examined(model), torch.enable_grad(), LayerOutput(layer, as_leaf=True) as caught:
        logits = model(inputs).float()
        if caught.value is None:
            raise RuntimeError("the layer was not reached by the forward pass")
        classes = logits.argmax(1) if classes is None else classes.to(logits.device)
        score = logits.gather(1, classes[:, None]).sum()
        (grads,) = torch.autograd.grad(score, caught.value)
    activations = caught.value.detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)
    return CamResult((cam / peak[:, None, None]).cpu(), logits.detach().softmax(1).cpu(), classes.cpu())


def blend(view: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """uint8 C x H x W image and an H x W map in 0..1 -> float H x W x 3: the image in grey (so the colours
    are the heat map's) blended with the map in the jet colour map."""
    picture = view.float().mean(0).cpu().numpy() / 255.0
    heat = colormaps["jet"](cam.numpy())[..., :3]
    return (1 - alpha) * np.repeat(picture[..., None], 3, axis=2) + alpha * heat


def gradcam_figure(view: torch.Tensor, cam: torch.Tensor, title: str, caption: str, alpha: float = 0.5) -> Figure:
    """The image as the model saw it beside its Grad-CAM blend, the top guesses underneath."""
    h, w = cam.shape
    side = 3.2
    fig = Figure(figsize=(2 * side * w / max(h, w) + 0.4, side * h / max(h, w) + 1.1), dpi=100)
    for i, (picture, name) in enumerate(((view, "input"), (None, "Grad-CAM"))):
        ax = fig.add_subplot(1, 2, i + 1)
        if picture is None:
            ax.imshow(blend(view, cam, alpha), interpolation="bilinear")
        else:
            rgb = picture.permute(1, 2, 0).cpu().numpy()
            ax.imshow(rgb[..., 0] if rgb.shape[2] == 1 else rgb, cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    lines = textwrap.wrap(title, width=int(fig.get_figwidth() * 72 / (9 * 0.6)))  # 9-point characters
    fig.suptitle("\n".join(lines), fontsize=9)
    fig.text(0.5, 0.02, caption, ha="center", va="bottom", fontsize=8)
    inches = fig.get_figheight()
    fig.subplots_adjust(left=0.02, right=0.98, top=0.82 - 0.15 * (len(lines) - 1) / inches, bottom=0.14, wspace=0.05)
    return fig


def top_guesses(probs: torch.Tensor, names: list[str], k: int = 3) -> str:
    values, indices = probs.topk(min(k, len(names)))
    return "   ".join(f"{rank}. {names[i]} {p:.2f}" for rank, (p, i) in enumerate(zip(values.tolist(),
                                                                                      indices.tolist()), 1))
