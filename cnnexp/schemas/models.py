"""Model configs made from the model factories' signatures (`cnnexp/models/<family>.py`), read with
`ast` so that composing a config never imports torch: the keyword parameters after `in_shape,
num_classes` are the keys, their literal defaults the defaults, their annotations (or the defaults'
types) the types; then the keys every model takes (`COMMON_MODEL_KEYS`: weights, freezing). So a
model has one source for its keys and defaults, and adding one is one file.
"""

import ast
import dataclasses
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


SIMPLE_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "Any": Any}
SUPPORTED = "int, float, str, bool, list[T], T | None or Optional[T]"


class UnsupportedParameter(Exception):
    """A factory parameter a config key cannot stand for (its message names the parameter and why)."""


def annotation_type(node: ast.expr | None, default) -> Any:
    """The config type of a parameter: its annotation (int, float, str, bool, list[T], T | None,
    Optional[T]), else the type of its default."""
    if node is None:
        return default_type(default)
    if isinstance(node, ast.Name) and node.id in SIMPLE_TYPES:
        return SIMPLE_TYPES[node.id]
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.Subscript) and type_name(node.value) in ("list", "tuple", "List", "Tuple"):
        inner = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
        return typing.List[annotation_type(inner, None)]
    if isinstance(node, ast.Subscript) and type_name(node.value) == "Optional":
        return Optional[annotation_type(node.slice, None)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = annotation_type(node.left, None), annotation_type(node.right, None)
        if type(None) not in (left, right):
            raise UnsupportedParameter(f"the annotation {ast.unparse(node)} is a union a config key cannot hold")
        return Optional[left if right is type(None) else right]
    raise UnsupportedParameter(f"the annotation {ast.unparse(node)} is not a config type ({SUPPORTED})")


def type_name(node: ast.expr) -> str | None:
    """`list`, `typing.List` -> "list", "List"."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def default_type(default) -> Any:
    if isinstance(default, (list, tuple)):
        return typing.List[default_type(default[0]) if default else Any]
    if default is None:
        return Any
    return type(default)


def literal_default(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UnsupportedParameter(f"the default {ast.unparse(node)} is not a literal a config can hold; give a "
                                   "number, string, bool, None or a list of them (e.g. a name the factory turns "
                                   "into the layer)") from None


def model_fields(fn: ast.FunctionDef) -> list[tuple]:
    """(name, type, dataclass field) for each config key of a factory: its parameters after the first two.
    A parameter no config key can stand for raises `UnsupportedParameter` naming the factory and it."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = list(zip(positional, defaults))[2:] + list(zip(args.kwonlyargs, args.kw_defaults))
    fields = []
    for arg, default_node in params:
        try:
            default = MISSING if default_node is None else literal_default(default_node)
            kind = annotation_type(arg.annotation, None if default is MISSING else default)
        except UnsupportedParameter as exc:
            raise UnsupportedParameter(f"model {registered_name(fn)}: parameter {arg.arg} of {fn.name}(): {exc}") from None
        spec = (field(default_factory=lambda d=default: list(d)) if isinstance(default, (list, tuple))
                else field(default=default))
        fields.append((arg.arg, kind, spec))
    return fields


def registered_name(fn: ast.FunctionDef) -> str | None:
    """The model name `@register_model` (or `@register_model(name="x")`) gives the factory; None when it
    is not registered."""
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if type_name(target) == "register_model":
            names = [k.value.value for k in getattr(deco, "keywords", []) if k.arg == "name"]
            return names[0] if names else fn.name
    return None


def common_fields() -> list[tuple]:
    """The keys every model takes (starting weights, freezing: `cnnexp.models.COMMON_MODEL_KEYS`)."""
    from cnnexp.models import COMMON_MODEL_KEYS

    fields = []
    for key, (annotation, default, _help) in COMMON_MODEL_KEYS.items():
        kind = annotation_type(ast.parse(annotation, mode="eval").body, default)
        spec = field(default_factory=lambda d=default: list(d)) if isinstance(default, tuple) else field(default=default)
        fields.append((key, kind, spec))
    return fields


def registered_factories(models_dir: Path | None = None):
    """(model name, factory's ast node) for every `@register_model` factory in the models package."""
    for path in sorted((models_dir or MODELS_DIR).glob("*.py")):
        if not path.name.startswith("_"):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.FunctionDef) and registered_name(node):
                    yield registered_name(node), node


def model_schemas(models_dir: Path | None = None) -> dict[str, type]:
    """{model name: dataclass} for every `@register_model` factory in the models package: its own keys,
    then the keys every model takes. A factory with a parameter no config key can stand for has no
    schema (see `unusable_models`): that model alone is refused, with a line that names the parameter."""
    schemas = {}
    for name, node in registered_factories(models_dir):
        try:
            fields = [("name", str, field(default=name)), *model_fields(node), *common_fields()]
        except UnsupportedParameter:
            continue
        schemas[name] = dataclasses.make_dataclass(f"{name}_config", fields)
    return schemas


def unusable_models(models_dir: Path | None = None) -> dict[str, str]:
    """{model name: why no config can be made for it} for the factories `model_schemas` leaves out."""
    problems = {}
    for name, node in registered_factories(models_dir):
        try:
            model_fields(node)
        except UnsupportedParameter as exc:
            problems[name] = str(exc)
    return problems
