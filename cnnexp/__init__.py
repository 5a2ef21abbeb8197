"""cnnexp: config-driven CNN image-classification experiments, as a command line (`cnnexp`) and a library.

    import cnnexp
    run = cnnexp.train("dataset=olivetti", "model=lenet", "trainer.epochs=5")
    cnnexp.open_run(run.folder).predict("face.png")

The names below are imported when first used, so `import cnnexp` stays light (no torch, no Hydra)."""

from cnnexp._version import __version__

API = {"train": "cnnexp.apis", "sweep": "cnnexp.apis", "open_run": "cnnexp.apis", "Run": "cnnexp.apis",
       "Sweep": "cnnexp.apis", "Predictor": "cnnexp.apis",
       "CnnexpError": "cnnexp.errors", "UserError": "cnnexp.errors", "ConfigError": "cnnexp.errors",
       "DataError": "cnnexp.errors", "RunError": "cnnexp.errors", "WeightsError": "cnnexp.errors",
       "Diverged": "cnnexp.errors", "Interrupted": "cnnexp.errors"}


def __getattr__(name: str):
    if name in API:
        import importlib

        return getattr(importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'cnnexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


__all__ = sorted(API)
