"""`model.freeze=` / `model.trainable=`: train only part of a model.

Prefixes are module names as `model.named_modules()` spells them (`features`, `layer4`,
`features.24`, `classifier.0`), matched at dots (`layer1` does not match `layer10`), plus the
aliases a model declares in `module_aliases` (VGG's `block1`..`block5`). A frozen parameter gets
`requires_grad=False` (so no gradient and no place in the optimizer); a frozen batch-norm layer is
replaced by a `FrozenBatchNorm` (as timm's `freeze_batch_norm_2d` does), which normalises with its
running statistics in training as in evaluation, so they never change.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnexp.utils.errors import UserError


@dataclass
class FreezeReport:
    trainable: int  # parameters (elements) left to train
    total: int
    frozen_norm_layers: int

    def summary(self) -> str:
        return f"{self.trainable:,} trainable of {self.total:,} parameters"


def under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def expand(model: nn.Module, prefixes, key: str, model_name: str) -> list[str]:
    """Aliases replaced by the module names they stand for; a prefix naming no module is an error."""
    aliases = getattr(model, "module_aliases", {})
    names = [name for name, _ in model.named_modules() if name]
    out = []
    for prefix in prefixes or ():
        prefix = str(prefix)
        expanded = aliases.get(prefix, [prefix])
        if not any(under(name, expanded) for name in names):
            top = [name for name, _ in model.named_children()]
            hint = f"; aliases: {', '.join(aliases)}" if aliases else ""
            raise UserError(f"{key}=[{prefix}] names no module of {model_name}; use module names such as "
                            f"{', '.join(top)} (or deeper ones like {names[1] if len(names) > 1 else names[0]}){hint}")
        out += expanded
    return out


def apply_freeze(model: nn.Module, freeze, trainable, model_name: str) -> FreezeReport:
    """Freeze the parameters under `freeze`, or everything not under `trainable` (when given)."""
    frozen_prefixes = expand(model, freeze, "model.freeze", model_name)
    trainable_prefixes = expand(model, trainable, "model.trainable", model_name) if trainable is not None else None

    def is_frozen(name: str) -> bool:
        return under(name, frozen_prefixes) or (trainable_prefixes is not None and not under(name, trainable_prefixes))

    for name, param in model.named_parameters():
        if is_frozen(name):
            param.requires_grad_(False)
    norm_layers = [name for name, m in model.named_modules()
                   if isinstance(m, _BatchNorm) and m.track_running_stats and is_frozen(name)]
    for name in norm_layers:
        swap_module(model, name, FrozenBatchNorm(model.get_submodule(name)))
    params = list(model.parameters())
    report = FreezeReport(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params),
                          len(norm_layers))
    if report.trainable == 0:
        raise UserError(f"model.freeze / model.trainable leave no parameter of {model_name} to train; "
                        "unfreeze at least the head (e.g. model.trainable=[fc] or [classifier])")
    return report


class FrozenBatchNorm(nn.Module):
    """A batch-norm layer with fixed statistics and affine: it normalises with the running mean and
    variance whatever its mode (timm's FrozenBatchNorm2d, for any input rank the replaced layer took).
    Its tensors are the replaced layer's under the same names (weight and bias stay parameters, frozen;
    running_mean, running_var, num_batches_tracked stay buffers), so checkpoints load across freezing."""

    def __init__(self, norm: _BatchNorm):
        super().__init__()
        self.num_features, self.eps = norm.num_features, norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(norm, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def swap_module(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, replacement)


def head_prefix(model: nn.Module) -> str:
    """The module holding the classifier head: what the model declares (`head_prefix`), else the last
    module that has parameters of its own (the output layer)."""
    declared = getattr(model, "head_prefix", None)
    if declared:
        return declared
    owners = [name for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))]
    return owners[-1]


def parameter_groups(model: nn.Module, head_lr_mult: float, lr: float, decay_norm_bias: bool = True) -> list[dict]:
    """The trainable parameters in optimizer groups: with `head_lr_mult` != 1 the head gets its own group
    at lr x mult; with `decay_norm_bias` false, biases and norm-layer weights (every tensor of one
    dimension, as timm decides) get a group with no weight decay."""
    head = head_prefix(model) if head_lr_mult != 1 else None
    groups: dict[tuple[bool, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_head = head is not None and under(name, [head])
        no_decay = not decay_norm_bias and param.ndim <= 1
        group = groups.setdefault((in_head, no_decay), {"params": []})
        group["params"].append(param)
    for (in_head, no_decay), group in groups.items():
        if head is not None:
            group["name"] = "head" if in_head else "backbone"
        if in_head:
            group["lr"] = lr * head_lr_mult
        if no_decay:
            group["weight_decay"] = 0.0
            group["name"] = f"{group.get('name', 'all')}/no_decay"
    return [groups[key] for key in sorted(groups)]
