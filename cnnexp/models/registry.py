"""The model registry: `@register_model` adds a factory under its name (models/__init__.py says where
the families are and builds models from it)."""

from cnnexp.utils.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register
