"""A small CNN for photos on a CPU: conv-BN-ReLU blocks, each halving the resolution, then global
average pooling, so any input size works (the dogs-vs-cats experiment's stand-in for AlexNet)."""

from torch import nn

from cnnexp.utils.errors import UserError
from cnnexp.models.registry import register_model


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@register_model
def small_cnn(in_shape, num_classes, widths: list[int] = (32, 64, 128, 256), stem_stride: int = 2,
              dropout: float = 0.5, convs_per_stage: int = 1):
    """One stage per width: `convs_per_stage` 3x3 conv-BN-ReLU of that width (the first of the first
    stage with stride `stem_stride`: 2 halves the work on large images), then a 2x2 max-pool; global
    average pooling and `dropout` before the output layer."""
    widths = list(widths)
    if not widths or min(widths) < 1 or int(stem_stride) < 1 or int(convs_per_stage) < 1:
        raise UserError(f"model.widths={widths} must list positive channel counts, and model.stem_stride and "
                        "model.convs_per_stage must be >= 1")
    layers, channels = [], in_shape[0]
    for i, width in enumerate(widths):
        for j in range(int(convs_per_stage)):
            layers += conv_bn_relu(channels, width, int(stem_stride) if i == j == 0 else 1)
            channels = width
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
