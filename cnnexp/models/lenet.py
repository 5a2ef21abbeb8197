"""The LeNet family: the deeplearning.net LeNet (conv+max-pool layers, tanh, one hidden layer) and
the classic LeNet-5 (6-16-120-84)."""

import math

from torch import nn

from cnnexp.utils.errors import UserError
from cnnexp.models.registry import register_model
from cnnexp.models._layers import check_fractions, check_sizes, flat_size, make_activation


class LeNet(nn.Module):
    head_prefix = "classifier"  # the layers after the features (optimizer.head_lr_mult)

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def theano_init(model: LeNet, pool: int):
    """The Theano tutorial's init: uniform +-sqrt(6 / (fan_in + fan_out)) with conv fan_out divided by
    the pooling area, zero biases, and a zero-initialised softmax layer."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for conv in convs:
        k = conv.kernel_size[0] * conv.kernel_size[1]
        fan_in, fan_out = conv.in_channels * k, conv.out_channels * k / pool**2
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        nn.init.uniform_(conv.weight, -bound, bound)
        nn.init.zeros_(conv.bias)
    for hidden in linears[:-1]:
        bound = math.sqrt(6.0 / (hidden.in_features + hidden.out_features))
        nn.init.uniform_(hidden.weight, -bound, bound)
        nn.init.zeros_(hidden.bias)
    nn.init.zeros_(linears[-1].weight)
    nn.init.zeros_(linears[-1].bias)


@register_model
def lenet(in_shape, num_classes, nkerns: list[int] = (20, 50), kernel_size: int = 5, pool: int = 2, hidden: int = 500,
          activation: str = "tanh", init: str = "theano", dropout: float = 0.0):
    """The deeplearning.net LeNet: N conv + max-pool layers, tanh, one hidden layer, softmax output.

    nkerns: kernels per conv layer (the list length is the number of layers); kernel_size, pool: conv
    and max-pool sizes; hidden: units of the hidden layer (500 as the MNIST tutorial; the Olivetti
    tutorial used 2000, experiment=olivetti_lenet); activation: tanh | relu | sigmoid | elu; init:
    theano (uniform +-sqrt(6/(fan_in+fan_out/pool^2)), zero bias) | pytorch; dropout: before the
    output layer."""
    nkerns = list(nkerns)
    if not nkerns or min(nkerns) < 1:
        raise UserError(f"model.nkerns={nkerns} must list at least one positive kernel count, e.g. [20,50]")
    check_sizes("lenet", kernel_size=kernel_size, pool=pool, hidden=hidden)
    check_fractions("lenet", dropout=dropout)
    layers, channels = [], in_shape[0]
    for width in nkerns:
        layers += [nn.Conv2d(channels, width, kernel_size), nn.MaxPool2d(pool), make_activation(activation)]
        channels = width
    features = nn.Sequential(*layers)
    n_flat = flat_size(features, in_shape, f"lenet with nkerns={nkerns}")
    classifier = nn.Sequential(
        nn.Linear(n_flat, hidden), make_activation(activation), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
    )
    model = LeNet(features, classifier)
    if init == "theano":
        theano_init(model, pool)
    elif init != "pytorch":
        raise UserError(f"model.init={init} is not one of: theano, pytorch")
    return model


@register_model
def lenet5(in_shape, num_classes, activation: str = "tanh", pool_type: str = "avg", dropout: float = 0.0):
    """LeCun et al. 1998: conv 6@5x5 ('same' on the input, as the 32x32 padding of the paper), pool,
    conv 16@5x5, pool, dense 120, 84, output. pool_type: avg (subsampling, as the paper) | max."""
    pooling = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
    if pool_type not in pooling:
        raise UserError(f"model.pool_type={pool_type} is not one of: avg, max")
    check_fractions("lenet5", dropout=dropout)
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], 6, 5, padding=2), make_activation(activation), pooling[pool_type](2),
        nn.Conv2d(6, 16, 5), make_activation(activation), pooling[pool_type](2),
    )
    n_flat = flat_size(features, in_shape, "lenet5")
    classifier = nn.Sequential(
        nn.Linear(n_flat, 120), make_activation(activation), nn.Dropout(dropout),
        nn.Linear(120, 84), make_activation(activation), nn.Dropout(dropout),
        nn.Linear(84, num_classes),
    )
    return LeNet(features, classifier)
