"""Models: a registry of factories, one module per family.

A factory takes `in_shape=(C, H, W)` and `num_classes` (told by the dataset) plus its own config
keys, and returns an `nn.Module` producing logits. Add a model with one new module here:

    @register_model
    def mynet(in_shape, num_classes, width=32): ...
"""

from cnnexp.utils.registry import Registry

MODELS = Registry("model", "cnnexp.models")
register_model = MODELS.register
list_models = MODELS.names


def create_model(name: str, in_shape, num_classes: int, **kwargs):
    return MODELS.create(name, in_shape=tuple(in_shape), num_classes=int(num_classes), **kwargs)


def model_kwargs(model_cfg) -> dict:
    """The factory's keyword arguments: the model config node without its `name`."""
    from omegaconf import OmegaConf

    kwargs = OmegaConf.to_container(model_cfg, resolve=True) if not isinstance(model_cfg, dict) else dict(model_cfg)
    kwargs.pop("name", None)
    return kwargs
