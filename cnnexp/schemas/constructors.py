"""The free-form groups' keys (optimizer, scheduler): each is a constructor argument of the group's
`_target_` class or one the engine reads itself, checked before any data is read, so that a key the
chosen class does not take (`+optimizer.momentum=0.9` with Adam) is one `error:` line naming the key,
the choices that take it and the keys the class does take, instead of a failure after the data loaded."""

import difflib
import importlib
import inspect
from functools import cache

from omegaconf import OmegaConf

from cnnexp.utils.errors import ConfigError
from cnnexp.utils.files import conf_dir

# Keys read by the engine (param groups, warm-up), not passed to the constructor.
ENGINE_KEYS = {"optimizer": ("head_lr_mult", "decay_norm_bias"), "scheduler": ("warmup_epochs",)}
# The argument the engine passes itself (the parameters, the optimizer): not a key.
PASSED = {"optimizer": "params", "scheduler": "optimizer"}


@cache
def constructor_keys(group: str, target: str | None) -> frozenset | None:
    """The keys a `group` config with this `_target_` takes, or None when the class takes any (**kwargs).
    `target` null (scheduler=none): only the engine's keys."""
    if target is None:
        return frozenset(ENGINE_KEYS[group])
    parameters = inspect.signature(located(group, target)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset({p.name for p in parameters} - {"self", PASSED[group]}) | set(ENGINE_KEYS[group])


def located(group: str, target: str) -> type:
    """The class a `_target_` names (module.Class)."""
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError) as exc:
        cls = exc
    if not isinstance(cls, type):
        why = f" ({cls})" if isinstance(cls, Exception) else ""
        raise ConfigError(f"{group}._target_={target} is not a class cnnexp can import{why}; "
                        f"give one such as torch.optim.SGD, or choose {group}=<name>")
    return cls


def choices_taking(group: str, key: str) -> list[str]:
    """The group's choices in conf/ (optimizer=sgd, ...) whose class takes `key`."""
    names = []
    for path in sorted((conf_dir() / group).glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        try:
            known = constructor_keys(group, target)
        except ConfigError:
            continue
        if known is None or key in known:
            names.append(f"{group}={path.stem}")
    return names


def check_constructor_keys(group: str, node) -> None:
    """Each key of an optimizer or scheduler config is one its class takes (Hydra's `_..._` keys aside)."""
    target = node.get("_target_")
    known = constructor_keys(group, target)
    if known is None:
        return
    for key in node:
        if key.startswith("_") or key in known:
            continue
        raise ConfigError(f"{group}.{key}: {target or f'{group}=none'} takes no argument '{key}'; "
                        + fix(group, key, target, known))


def fix(group: str, key: str, target: str | None, known) -> str:
    """The key meant (a typo), else the choices that take the key and the keys this class takes."""
    near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    if near:
        return f"did you mean {group}.{near[0]}?"
    others = choices_taking(group, key)
    name = target.rsplit(".", 1)[-1] if target else f"{group}=none"
    return (f"use {' or '.join(others)}, or " if others else "") + f"one of {name}'s keys: {', '.join(sorted(known))}"
