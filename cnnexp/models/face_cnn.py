"""The TensorFlow 2 walkthrough's CNN for faces cut from a video (70x50 RGB, one folder per person):
three 5x5 conv layers with 2x2 max-pooling, then a tall dense stack with dropout."""

from torch import nn

from cnnexp.utils.errors import UserError
from cnnexp.models.registry import register_model
from cnnexp.models._layers import check_fractions, check_sizes, flat_size
from cnnexp.models.lenet import LeNet


@register_model
def face_cnn(in_shape, num_classes, *, convs: list[int] = (32, 64, 128), kernel_size: int = 5,
             padding: str = "same", pool: int = 2, dense: list[int] = (8192, 1024, 128), dropout: float = 0.5,
             bottleneck: int = 60):
    """conv `convs[i]` x `kernel_size` ('same' or 'valid' `padding`) -> ReLU -> max-pool `pool`;
    flatten; dense layers -> ReLU -> dropout; a `bottleneck` dense layer with ReLU (0: none); output."""
    if padding not in ("same", "valid"):
        raise UserError(f"model.padding={padding} is not one of: same, valid")
    check_sizes("face_cnn", convs=convs, kernel_size=kernel_size, pool=pool, dense=dense)
    check_fractions("face_cnn", dropout=dropout)
    layers, channels = [], in_shape[0]
    for width in convs:
        layers += [nn.Conv2d(channels, width, kernel_size, padding=padding), nn.ReLU(inplace=True), nn.MaxPool2d(pool)]
        channels = width
    features = nn.Sequential(*layers)
    head, n_in = [], flat_size(features, in_shape, "face_cnn")
    for width in dense:
        head += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        n_in = width
    if bottleneck:
        head += [nn.Linear(n_in, bottleneck), nn.ReLU(inplace=True)]
        n_in = bottleneck
    head.append(nn.Linear(n_in, num_classes))
    return LeNet(features, nn.Sequential(*head))
