"""The dataset registry: `@register_dataset` adds a source's factory under its name (data/__init__.py
says where the sources are and builds datasets from it)."""

from cnnexp.utils.registry import Registry

DATASETS = Registry("dataset")
register_dataset = DATASETS.register
