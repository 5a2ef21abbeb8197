"""Levi & Hassner's age/gender CNN (CVPR workshops 2015), as the Caffe original and its TensorFlow
port (rude-carnie) build it: three conv layers with max-pooling and local response normalisation,
two dense layers with dropout, for 227x227 RGB faces."""

from torch import nn

from cnnexp.models.registry import register_model
from cnnexp.models._layers import LocalResponseNorm, check_fractions, check_lengths, check_sizes, flat_size
from cnnexp.models.lenet import LeNet


@register_model
def levi_hassner(in_shape, num_classes, *, convs: list[int] = (96, 256, 384), kernels: list[int] = (7, 5, 3),
                 stride: int = 4, pool: int = 3, pool_stride: int = 2, lrn_size: int = 5, lrn_alpha: float = 1.0e-4,
                 lrn_beta: float = 0.75, lrn_layers: int = 2, dense: list[int] = (512, 512), dropout: float = 0.5,
                 conv_std: float = 0.01, dense_std: float = 0.005, output_std: float = 0.01,
                 bias_one: bool = True):
    """conv `convs[i]` x `kernels[i]` (the first with `stride`, no padding; the others 'same') -> ReLU
    -> max-pool `pool`/`pool_stride`, with LRN (Caffe's: alpha divided by `lrn_size`) after the first
    `lrn_layers` pools; dense layers with ReLU and dropout. Init: normal std `conv_std` for the convs,
    `dense_std` for the hidden dense layers, `output_std` for the output; biases 0, except 1 for conv2
    and the hidden dense layers as the original (`bias_one=false`: all 0)."""
    check_lengths("levi_hassner", convs=convs, kernels=kernels)
    check_sizes("levi_hassner", stride=stride, pool=pool, pool_stride=pool_stride, lrn_size=lrn_size, dense=dense)
    check_fractions("levi_hassner", dropout=dropout)
    layers, channels = [], in_shape[0]
    for i, (width, kernel) in enumerate(zip(convs, kernels)):
        conv = nn.Conv2d(channels, width, kernel, stride if i == 0 else 1, padding=0 if i == 0 else kernel // 2)
        layers += [conv, nn.ReLU(inplace=True), nn.MaxPool2d(pool, pool_stride)]
        if i < lrn_layers:
            layers.append(LocalResponseNorm(lrn_size, alpha=lrn_alpha, beta=lrn_beta, k=1.0))
        channels = width
    features = nn.Sequential(*layers)
    head, n_in = [], flat_size(features, in_shape, "levi_hassner")
    for width in dense:
        head += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        n_in = width
    head.append(nn.Linear(n_in, num_classes))
    model = LeNet(features, nn.Sequential(*head))
    levi_hassner_init(model, conv_std, dense_std, output_std, bias_one)
    return model


def levi_hassner_init(model: LeNet, conv_std: float, dense_std: float, output_std: float, bias_one: bool) -> None:
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    dense = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for layer, std in [(c, conv_std) for c in convs] + [(d, dense_std) for d in dense[:-1]] + [(dense[-1], output_std)]:
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)
    if bias_one:  # the original's constant-1 biases: conv2 and the hidden dense layers
        for layer in convs[1:2] + dense[:-1]:
            nn.init.ones_(layer.bias)
