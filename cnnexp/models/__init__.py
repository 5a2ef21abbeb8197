"""Models: a registry of factories, one module per family.

A factory takes `in_shape=(C, H, W)` and `num_classes` (told by the dataset) plus its own config
keys, and returns an `nn.Module` producing logits. Add a model with one new module here:

    from cnnexp.models.registry import register_model

    @register_model
    def mynet(in_shape, num_classes, *, width: int = 32): ...

Every model config also takes the keys in COMMON_MODEL_KEYS (weights to start from, freezing); the
engine handles those (models/weights.py, models/freeze.py), so factories never see them.
"""

from cnnexp.models.registry import MODELS, register_model

MODELS.discover("cnnexp.models")
list_models = MODELS.names


# key: (type, default, help). Typed as the factories' keyword parameters are.
COMMON_MODEL_KEYS = {
    "weights": ("str | None", None, "weights to start from: a .pth/.pt/.safetensors file, a torchvision weights "
                                    "name (IMAGENET1K_V1, DEFAULT) or a cnnexp run folder / checkpoint"),
    "download": ("bool", True, "fetch a torchvision weights file missing from the TORCH_HOME cache (needs internet)"),
    "preprocess": ("str", "weights", "weights: normalise as the weights were trained (their mean/std) | dataset: "
                                     "as dataset.normalize says"),
    "freeze": ("list[str]", (), "module-name prefixes whose parameters are not trained (e.g. [features], "
                                "[conv1,bn1,layer1]); frozen batch norm keeps its running statistics"),
    "trainable": ("list[str] | None", None, "if set, freeze everything except these module-name prefixes"),
}


PREPROCESSES = ("weights", "dataset")  # model.preprocess


def create_model(name: str, in_shape, num_classes: int, **kwargs):
    return MODELS.create(name, in_shape=tuple(in_shape), num_classes=int(num_classes), **kwargs)


def model_kwargs(model_cfg) -> dict:
    """The factory's keyword arguments: the model config node without its `name`."""
    from omegaconf import OmegaConf

    kwargs = OmegaConf.to_container(model_cfg, resolve=True) if not isinstance(model_cfg, dict) else dict(model_cfg)
    for key in ("name", *COMMON_MODEL_KEYS):
        kwargs.pop(key, None)
    return kwargs
