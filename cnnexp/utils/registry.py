"""A tiny name -> factory registry (timm style) shared by models and datasets.

The registry lives in a module of its own (`models/registry.py`, `data/registry.py`) that the entries
import to register; the package above them (`models/__init__.py`, `data/__init__.py`) names where the
entries are with `discover`, so an entry never imports the module that imports it."""

import importlib
import inspect
import pkgutil
from typing import Callable

from cnnexp.utils.errors import ConfigError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self.package = None
        self._factories: dict[str, Callable] = {}
        self._imported = False

    def register(self, fn: Callable = None, *, name: str = None):
        """Decorator: `@register` or `@register(name="x")` adds a factory under its name."""

        def add(f):
            self._factories[name or f.__name__] = f
            return f

        return add(fn) if fn is not None else add

    def discover(self, package: str) -> None:
        """Import every public module of `package` (a dotted name) on the first lookup, so one new file is
        all a new entry needs."""
        self.package = package

    def _import_all(self):
        if self._imported or self.package is None:
            return
        self._imported = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._import_all()
        return sorted(self._factories)

    def get(self, name: str) -> Callable:
        self._import_all()
        if name not in self._factories:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._factories[name]

    def create(self, name: str, **kwargs):
        """The factory's result. A value the factory refuses is a `ConfigError` it raises itself (see
        models/_layers.py `check_sizes`); any other exception inside it is a bug and propagates as it is,
        never reworded as advice about config values."""
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{self.kind} '{name}' got a wrong config key ({exc}); check the {self.kind}.* overrides")
        return factory(**kwargs)
