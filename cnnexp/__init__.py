"""cnnexp: config-driven CNN image-classification experiments."""

__version__ = "0.1.0"
