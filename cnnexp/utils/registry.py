"""A tiny name -> factory registry (timm style) shared by models and datasets."""

import importlib
import inspect
import pkgutil
from typing import Callable

from cnnexp.utils.errors import UserError


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._factories: dict[str, Callable] = {}
        self._imported = False

    def register(self, fn: Callable = None, *, name: str = None):
        """Decorator: `@register` or `@register(name="x")` adds a factory under its name."""

        def add(f):
            self._factories[name or f.__name__] = f
            return f

        return add(fn) if fn is not None else add

    def _import_all(self):
        """Import every module of the package once, so one new file is all a new entry needs."""
        if self._imported:
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
            raise UserError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._factories[name]

    def create(self, name: str, **kwargs):
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as exc:
            raise UserError(f"{self.kind} '{name}' got a wrong config key ({exc}); check the {self.kind}.* overrides")
        try:
            return factory(**kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. a negative width or an empty list
            settings = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("in_shape", "num_classes", "cfg"))
            raise UserError(f"cannot build {self.kind} '{name}' with {settings}: {str(exc).splitlines()[0]}; "
                            f"check the {self.kind}.* values") from exc
