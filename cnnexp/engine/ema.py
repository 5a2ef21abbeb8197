"""`trainer.ema_decay`: an exponential moving average of the weights, the model that is evaluated.

After every optimizer step, each averaged tensor moves towards the trained one:
avg <- avg + (1 - d) (w - avg), with d = min(ema_decay, (1 + step) / (10 + step)) so that the
average follows the fast early changes instead of remembering the random start (timm's ModelEmaV3
warm-up). Floating-point buffers (batch-norm running statistics) are averaged the same way, so the
statistics match the averaged weights (timm's ModelEmaV2); integer buffers are copied.
"""

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.module.eval()

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """`step`: optimizer steps taken before this one."""
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        floats = [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()]
        torch._foreach_lerp_([mine for mine, _ in floats], [theirs for _, theirs in floats], 1.0 - self.decay_at(step))
        for mine, theirs in pairs:
            if not mine.is_floating_point():
                mine.copy_(theirs)
