"""Tensors read from a weights source, and reading a state-dict file safely: what `model.weights=`
(weights.py) and the timm family's named weights (timm_models.py) both need."""

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError
from cnnexp.utils.safe_load import safe_torch_load

PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


@dataclass
class Weights:
    """Tensors read from a source, with what is known of how they were trained."""

    tensors: dict
    source: str  # as the user gave it
    kind: str  # file | safetensors | torchvision | run | package | timm
    path: str
    normalization: dict | None = None  # Normalizer.state_dict() form: mode, mean, std (0..255 units)
    input_size: list[int] | None = None  # H, W the weights were trained at, when known


def torch_load(path: Path):
    """torch.load with weights_only=True: only tensors and plain containers; code is refused."""
    return safe_torch_load(path, "weights file", "use a plain state dict (torch.save(model.state_dict(), path)) "
                                                 "or a .safetensors file")


def unwrap(obj, path: Path) -> dict:
    """The state dict inside a loaded file, with wrapper prefixes removed."""
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not tensors:
        raise UserError(f"{path} holds no state dict (no named tensors); save one with "
                        "torch.save(model.state_dict(), path)")
    return strip_prefixes(tensors)


def strip_prefixes(tensors: dict) -> dict:
    out = {}
    for name, tensor in tensors.items():
        while name.startswith(PREFIXES):
            name = name.split(".", 1)[1]
        out[name] = tensor
    return out
