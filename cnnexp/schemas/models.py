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


def annotation_type(node: ast.expr | None, default) -> Any:
    """The config type of a parameter: its annotation (int, float, str, bool, list[T], T | None), else
    the type of its default."""
    if node is None:
        return default_type(default)
    if isinstance(node, ast.Name) and node.id in SIMPLE_TYPES:
        return SIMPLE_TYPES[node.id]
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("list", "tuple"):
        inner = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
        return typing.List[annotation_type(inner, None)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = annotation_type(node.left, None), annotation_type(node.right, None)
        return Optional[left if right is type(None) else right]
    return Any


def default_type(default) -> Any:
    if isinstance(default, (list, tuple)):
        return typing.List[default_type(default[0]) if default else Any]
    if default is None:
        return Any
    return type(default)


def model_fields(fn: ast.FunctionDef) -> list[tuple]:
    """(name, type, dataclass field) for each config key of a factory: its parameters after the first two."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = list(zip(positional, defaults))[2:] + list(zip(args.kwonlyargs, args.kw_defaults))
    fields = []
    for arg, default_node in params:
        default = MISSING if default_node is None else ast.literal_eval(default_node)
        kind = annotation_type(arg.annotation, None if default is MISSING else default)
        spec = (field(default_factory=lambda d=default: list(d)) if isinstance(default, (list, tuple))
                else field(default=default))
        fields.append((arg.arg, kind, spec))
    return fields


def is_registered(fn: ast.FunctionDef) -> bool:
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if getattr(target, "id", getattr(target, "attr", None)) == "register_model":
            return True
    return False


def common_fields() -> list[tuple]:
    """The keys every model takes (starting weights, freezing: `cnnexp.models.COMMON_MODEL_KEYS`)."""
    from cnnexp.models import COMMON_MODEL_KEYS

    fields = []
    for key, (annotation, default, _help) in COMMON_MODEL_KEYS.items():
        kind = annotation_type(ast.parse(annotation, mode="eval").body, default)
        spec = field(default_factory=lambda d=default: list(d)) if isinstance(default, tuple) else field(default=default)
        fields.append((key, kind, spec))
    return fields


def model_schemas(models_dir: Path = MODELS_DIR) -> dict[str, type]:
    """{model name: dataclass} for every `@register_model` factory in the models package: its own keys,
    then the keys every model takes."""
    schemas = {}
    for path in sorted(models_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and is_registered(node):
                fields = [("name", str, field(default=node.name)), *model_fields(node), *common_fields()]
                schemas[node.name] = dataclasses.make_dataclass(f"{node.name}_config", fields)
    return schemas
