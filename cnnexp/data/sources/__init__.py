"""Dataset sources, one module each: the only modules the dataset registry imports.

A source decorates a factory with `@register_dataset`; the factory takes the `dataset` config node
and the run's seed and returns an `ImageData`.
"""
