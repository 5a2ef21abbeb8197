"""Which activation of a network is its "features", and a module that returns it.

One forward pass of a dummy input, with hooks on every module, records the order modules run in
and the shape each returns (`trace`). From that:

- the default is the input of the last `nn.Linear` (the penultimate features: LeNet's 500-d hidden
  layer, ResNet's pooled 2048-d vector), except for models whose classifier starts on an adaptively
  pooled conv map with room left in it (VGG's 7x7x512 = 25,088 values): there it is the global average of the
  last conv map (512-d), never the unpooled map by accident;
- `layer=<module name>` takes that module's output instead, flattened or globally pooled
  (`pool=avg|max`); a flattened output larger than `max_features` floats an image is refused with
  the numbers, since it fills a disk quickly and rarely probes better than its pooled version.
"""

from dataclasses import dataclass

import torch
from torch import nn

from cnnexp.utils.errors import UserError

POOLS = (None, "avg", "max")
SHOWN = 8  # module names listed when a layer name is unknown


@dataclass
class Traced:
    name: str
    module: nn.Module
    shape: tuple  # output shape for one image (no batch dimension)
    calls: int


@dataclass
class LayerChoice:
    """`name`'s input (`take="input"`) or output, then `pool` (None: flatten)."""

    name: str
    take: str  # input | output
    pool: str | None
    dim: int

    def describe(self) -> str:
        pooled = {"avg": "global average pool of ", "max": "global max pool of ", None: ""}[self.pool]
        return f"{pooled}{self.take} of {self.name}"


@torch.no_grad()
def trace(model: nn.Module, in_shape) -> list[Traced]:
    """Every named module that ran for one input, in the order its forward pass finished."""
    order: dict[str, Traced] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def record(mod, args, output, name=name):
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            seen = order.pop(name, None)
            order[name] = Traced(name, mod, shape, (seen.calls if seen else 0) + 1)

        handles.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters(), torch.zeros(0)).device
        model(torch.zeros(1, *in_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return list(order.values())


def is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def default_layer(traced: list[Traced]) -> LayerChoice:
    leaves = [t for t in traced if is_leaf(t.module)]
    linears = [i for i, t in enumerate(leaves) if isinstance(t.module, nn.Linear)]
    if not linears:
        raise UserError("the model has no nn.Linear layer to take the penultimate features from; "
                        "name one with layer=<module name> (layer=list shows them)")
    last = leaves[linears[-1]]
    maps = [t for t in leaves[: linears[0]] if len(t.shape) == 3]
    adaptive = any(isinstance(t.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for t in leaves[: linears[0]])
    if maps and adaptive and maps[-1].shape[1] * maps[-1].shape[2] > 1:
        return LayerChoice(maps[-1].name, "output", "avg", maps[-1].shape[0])
    return LayerChoice(last.name, "input", None, last.module.in_features)


def named_layer(traced: list[Traced], name: str, pool: str | None, max_features: int) -> LayerChoice:
    found = {t.name: t for t in traced}
    if name not in found:
        names = [t.name for t in traced][-SHOWN:]
        raise UserError(f"layer={name} is not a module of this model that runs in its forward pass; the last ones "
                        f"are {', '.join(names)} (layer=list shows all with their output shapes)")
    if pool not in POOLS:
        raise UserError(f"pool={pool} is not one of: avg, max, null (flatten)")
    shape = found[name].shape
    if pool is not None and len(shape) != 3:
        raise UserError(f"pool={pool} needs a conv map (C x H x W) but layer={name} gives {shape_text(shape)}; "
                        "leave pool=null for this layer")
    dim = shape[0] if pool is not None else int(torch.Size(shape).numel())
    if dim > max_features:
        hint = f"pool it with pool=avg ({shape[0]} values), or " if len(shape) == 3 else ""
        raise UserError(f"layer={name} gives {dim:,} floats an image ({shape_text(shape)}, {4 * dim / 2**10:,.0f} KiB "
                        f"each); {hint}raise max_features={dim} to keep it flattened")
    return LayerChoice(name, "output", pool, dim)


def choose_layer(model: nn.Module, in_shape, layer: str | None, pool: str | None, max_features: int) -> LayerChoice:
    traced = trace(model, in_shape)
    if layer is None:
        if pool is not None:
            raise UserError("pool= applies to a named layer; give layer=<module name> too (layer=list shows them)")
        return default_layer(traced)
    return named_layer(traced, str(layer), pool, int(max_features))


def layer_listing(model: nn.Module, in_shape) -> list[tuple[str, str, str]]:
    """(name, type, output shape) of every module, for `layer=list`."""
    return [(t.name, type(t.module).__name__, shape_text(t.shape)) for t in trace(model, in_shape)]


def shape_text(shape) -> str:
    return "x".join(map(str, shape)) if shape else "(not a tensor)"


class FeatureExtractor(nn.Module):
    """model(x) run for the side effect of a hook that keeps the chosen activation: N x dim floats."""

    def __init__(self, model: nn.Module, choice: LayerChoice):
        super().__init__()
        self.model, self.choice = model, choice
        self._kept = None
        module = model.get_submodule(choice.name)
        if choice.take == "input":
            module.register_forward_pre_hook(self._keep_input)
        else:
            module.register_forward_hook(self._keep_output)

    def _keep_input(self, module, args):
        self._kept = args[0]

    def _keep_output(self, module, args, output):
        self._kept = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._kept = None
        self.model(x)
        kept, self._kept = self._kept, None
        if self.choice.pool == "avg":
            kept = kept.mean((2, 3))
        elif self.choice.pool == "max":
            kept = kept.amax((2, 3))
        return kept.flatten(1).float()
