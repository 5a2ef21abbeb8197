"""The TensorFlow 2 walkthrough's MNIST CNN: 32 and 64 5x5 'same' convs with 2x2 pooling, then
dense 1024 / 256 / 50 with dropout."""

from torch import nn

from cnnexp.models.registry import register_model
from cnnexp.models._layers import check_fractions, check_sizes, flat_size
from cnnexp.models.lenet import LeNet


@register_model
def mnist_cnn(in_shape, num_classes, convs: list[int] = (32, 64), dense: list[int] = (1024, 256, 50),
              dropout: float = 0.5):
    """The TF2 walkthrough's MNIST CNN: 5x5 'same' convs (`convs`), each followed by 2x2 max-pooling,
    then dense layers (`dense`) with ReLU and `dropout` after each."""
    check_sizes("mnist_cnn", convs=convs, dense=dense)
    check_fractions("mnist_cnn", dropout=dropout)
    layers, channels = [], in_shape[0]
    for width in convs:
        layers += [nn.Conv2d(channels, width, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    features = nn.Sequential(*layers)
    head, n_in = [], flat_size(features, in_shape, "mnist_cnn")
    for width in dense:
        head += [nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(dropout)]
        n_in = width
    head.append(nn.Linear(n_in, num_classes))
    return LeNet(features, nn.Sequential(*head))
