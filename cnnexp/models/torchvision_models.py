"""torchvision's VGG16 (with and without batch norm) and ResNet-18/50, built by torchvision's own
constructors so torchvision and PyTorch weight files load by name. The classifier head is made for
the class count, and a 1-channel input gets a 1-channel first conv (weights.py sums the RGB filters
of loaded weights into it).

Each model names its head (`head_prefix`, for `optimizer.head_lr_mult`) and VGG its blocks
(`module_aliases`: block1..block5, the conv layers between max-pools, for `model.freeze`).

torchvision is imported when one of these models is built, not when the registry imports this module:
its import (which brings in torch._dynamo) costs a second or two of CPU, more than a whole short
tutorial run (LeNet on Olivetti) spends elsewhere on starting up."""

from torch import nn

from cnnexp.utils.errors import UserError
from cnnexp.models.registry import register_model


def one_channel_conv(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """The same conv for `channels` input channels (torchvision's models expect 3)."""
    if channels == conv.in_channels:
        return conv
    return nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


def check_input(name: str, in_shape, minimum: int) -> None:
    if in_shape[0] not in (1, 3):
        raise UserError(f"model {name} takes 1- or 3-channel images, not {in_shape[0]}; use dataset.channels=3 or 1")
    if min(in_shape[1:]) < minimum:
        raise UserError(f"model {name} needs inputs of at least {minimum}x{minimum}, not "
                        f"{in_shape[1]}x{in_shape[2]}; use larger images (e.g. dataset.size={minimum})")


def vgg_blocks(features: nn.Sequential) -> dict[str, list[str]]:
    """block1..block5: the module names of each run of layers ending in a max-pool."""
    blocks, current = {}, []
    for index, layer in enumerate(features):
        current.append(f"features.{index}")
        if isinstance(layer, nn.MaxPool2d):
            blocks[f"block{len(blocks) + 1}"] = current
            current = []
    return blocks


def vgg_head(n_in: int, dense: list[int], dropout: float, num_classes: int) -> nn.Sequential:
    """torchvision's classifier layout (Linear, ReLU, Dropout per hidden layer), so with the default
    `dense` [4096, 4096] ImageNet weights load into every hidden layer."""
    layers = []
    for width in dense:
        layers += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, num_classes))


def build_vgg(name: str, constructor, in_shape, num_classes: int, dense, dropout: float) -> nn.Module:
    check_input(name, in_shape, 32)
    model = constructor(weights=None)
    model.features[0] = one_channel_conv(model.features[0], in_shape[0])
    model.classifier = vgg_head(model.classifier[0].in_features, list(dense), dropout, num_classes)
    model.head_prefix = "classifier"
    model.module_aliases = vgg_blocks(model.features)
    return model


def torchvision_constructor(name: str):
    from torchvision import models

    return getattr(models, name)


@register_model
def vgg16(in_shape, num_classes, *, dense: list[int] = (4096, 4096), dropout: float = 0.5):
    """VGG16 (Simonyan & Zisserman): 13 3x3 convs in five blocks, torchvision's 7x7 adaptive pooling,
    hidden dense layers `dense` with ReLU and dropout `dropout`, then the output layer."""
    return build_vgg("vgg16", torchvision_constructor("vgg16"), in_shape, num_classes, dense, dropout)


@register_model
def vgg16_bn(in_shape, num_classes, *, dense: list[int] = (4096, 4096), dropout: float = 0.5):
    """VGG16 with batch norm after every conv (torchvision's vgg16_bn)."""
    return build_vgg("vgg16_bn", torchvision_constructor("vgg16_bn"), in_shape, num_classes, dense, dropout)


def build_resnet(name: str, constructor, in_shape, num_classes: int, dropout: float) -> nn.Module:
    check_input(name, in_shape, 8)
    model = constructor(weights=None)
    model.conv1 = one_channel_conv(model.conv1, in_shape[0])
    fc = nn.Linear(model.fc.in_features, num_classes)
    model.fc = nn.Sequential(nn.Dropout(dropout), fc) if dropout else fc
    model.head_prefix = "fc"
    return model


@register_model
def resnet18(in_shape, num_classes, *, dropout: float = 0.0):
    """ResNet-18 (He et al.); `dropout` > 0 puts dropout before the output layer (then named fc.1)."""
    return build_resnet("resnet18", torchvision_constructor("resnet18"), in_shape, num_classes, dropout)


@register_model
def resnet50(in_shape, num_classes, *, dropout: float = 0.0):
    """ResNet-50 (bottleneck blocks); `dropout` as resnet18."""
    return build_resnet("resnet50", torchvision_constructor("resnet50"), in_shape, num_classes, dropout)
