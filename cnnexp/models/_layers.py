"""Helpers shared by model families."""

import torch
from torch import nn

from cnnexp.utils.errors import UserError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"model.activation={name} is not one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def flat_size(features: nn.Module, in_shape: tuple, model: str) -> int:
    """Number of features after `features` for one input of `in_shape`; a clear error if it collapses."""
    try:
        with torch.no_grad():
            return features(torch.zeros(1, *in_shape)).numel()
    except RuntimeError as exc:
        size = "x".join(map(str, in_shape[1:]))
        raise UserError(
            f"model {model} does not fit {size} inputs ({str(exc).splitlines()[0]}); "
            "use fewer conv layers, a smaller kernel or pool, or larger images"
        ) from exc


def check_lengths(model: str, **lists) -> None:
    """Per-layer lists (channels, kernels) must be non-empty, positive and equally long."""
    lengths = {len(v) for v in lists.values()}
    values = [x for v in lists.values() for x in v]
    if len(lengths) != 1 or 0 in lengths or min(values) < 1:
        shown = ", ".join(f"model.{k}={list(v)}" for k, v in lists.items())
        raise UserError(f"{shown} must be non-empty lists of positive numbers, one per conv layer ({model})")
