"""AlexNet with batch normalisation, as the dogs-vs-cats tutorial (Deep Learning for Computer Vision
with Python) writes it in Keras: each conv and dense layer is followed by ReLU then BatchNorm,
'same' padding, dropout 0.25 after each pooling and 0.5 after each dense layer."""

from torch import nn

from cnnexp.models.registry import register_model
from cnnexp.models._layers import check_fractions, check_lengths, check_sizes, flat_size
from cnnexp.models.lenet import LeNet


@register_model
def alexnet_bn(in_shape, num_classes, *, convs: list[int] = (96, 256, 384, 384, 256),
               kernels: list[int] = (11, 5, 3, 3, 3), stride: int = 4, pool_after: list[int] = (1, 2, 5),
               pool: int = 3, pool_stride: int = 2, conv_dropout: float = 0.25, dense: list[int] = (4096, 4096),
               dropout: float = 0.5):
    """conv `convs[i]` x `kernels[i]` (the first with `stride`; padding kernel // 2, Keras' 'same')
    -> ReLU -> BN; after the convs numbered in `pool_after` (1-based) a max-pool `pool`/`pool_stride`
    and dropout `conv_dropout`; then dense layers -> ReLU -> BN -> dropout `dropout`; output."""
    check_lengths("alexnet_bn", convs=convs, kernels=kernels)
    check_sizes("alexnet_bn", stride=stride, pool=pool, pool_stride=pool_stride, dense=dense)
    check_fractions("alexnet_bn", conv_dropout=conv_dropout, dropout=dropout)
    layers, channels = [], in_shape[0]
    for i, (width, kernel) in enumerate(zip(convs, kernels), start=1):
        layers += [nn.Conv2d(channels, width, kernel, stride if i == 1 else 1, padding=kernel // 2),
                   nn.ReLU(inplace=True), nn.BatchNorm2d(width)]
        if i in pool_after:
            layers += [nn.MaxPool2d(pool, pool_stride), nn.Dropout(conv_dropout)]
        channels = width
    features = nn.Sequential(*layers)
    head, n_in = [], flat_size(features, in_shape, "alexnet_bn")
    for width in dense:
        head += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.BatchNorm1d(width), nn.Dropout(dropout)]
        n_in = width
    head.append(nn.Linear(n_in, num_classes))
    return LeNet(features, nn.Sequential(*head))
