"""The comment beside each key of a command's config, read from the YAML files in conf/ that its
config composes: the one source of a key's explanation, for `cnnexp <command> --help` and for the
site's generated reference (docs/hooks/reference.py). Values and their types come from the composed
config and its schema."""

import json
import re
import textwrap
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from cnnexp.utils.files import conf_dir
from cnnexp.utils.text import WIDTH

CONF = conf_dir()
SKIPPED_ROOTS = ("defaults", "hydra")
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w-]*)\s*:(?P<rest>.*)$")


@dataclass
class Key:
    path: str
    type: str
    default: str
    comment: str


# ---------------------------------------------------------------- comments beside the keys in conf/

def split_comment(rest: str) -> tuple[str, str]:
    """A YAML line's value and its trailing `# comment` (a `#` inside quotes is part of the value)."""
    quote = None
    for i, char in enumerate(rest):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), rest[i + 1:].strip()
    return rest.strip(), ""


def yaml_comments(path: Path) -> tuple[str, dict[str, str]]:
    """(the file's opening comment, {dotted key: its comment}). A key's comment is the one on its line,
    continued by comment-only lines starting in the same column, or else the comment lines right above it."""
    header, comments, stack, above = [], {}, [], []
    last_key, last_column, seen_key = None, None, False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            above, last_key = [], None
            continue
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if last_key and line.index("#") == last_column:
                comments[last_key] += " " + text
            elif not seen_key:
                header.append(text)
            else:
                above.append(text)
            continue
        match = KEY_LINE.match(line)
        if not match:  # a list item or a continued value
            last_key = None
            continue
        seen_key = True
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        key = ".".join(k for _, k in stack)
        _, comment = split_comment(match["rest"])
        comments[key] = comment or " ".join(above)
        last_key, above = key, []
        last_column = line.index("#", len(line) - len(match["rest"])) if comment else None
    return " ".join(header), comments


def package_prefix(path: Path, group: str) -> str:
    """Where a group file's keys land: under the group, or at the root for `# @package _global_`."""
    return "" if "@package _global_" in path.read_text() else group.replace("/", ".") + "."


def config_files(config_name: str, choices: dict) -> list[tuple[Path, str]]:
    """(file, key prefix) of every YAML a command's config composes: the primary file, the files its
    defaults list includes by name (recursively), and the chosen file of each group."""
    files, todo = [], [config_name]
    while todo:
        path = CONF / f"{todo.pop()}.yaml"
        if not path.exists():  # a schema in Hydra's ConfigStore, not a file
            continue
        files.append((path, ""))
        for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
            if isinstance(entry, str) and entry != "_self_":
                todo.append(entry)
    for group, choice in choices.items():
        path = CONF / group / f"{choice}.yaml"
        if choice and not group.startswith("hydra") and path.exists():
            files.append((path, package_prefix(path, group)))
    return files


def key_comments(config_name: str, choices: dict) -> dict[str, str]:
    """{dotted key: the comment beside it in the YAML files the command's config composes}; for the keys
    whose default lives in a schema (max_pixels, resize), the help beside the schema's field."""
    from cnnexp.schemas import schema_comments

    comments = schema_comments(config_name, choices)
    for path, prefix in config_files(config_name, choices):
        for key, comment in yaml_comments(path)[1].items():
            if comment and not key.startswith(SKIPPED_ROOTS):
                comments.setdefault(prefix + key, comment)
    return comments


def parent_comment(path: str, comments: dict[str, str]) -> str:
    """A key without a comment of its own is explained by its parent's (`dataset.root` under an eval
    config's commented `dataset:` block of overrides)."""
    parent = path.rpartition(".")[0]
    return comments.get(parent, "") if parent else ""


MODEL_DOCS = "the site's Config groups page"


def model_comments(model: str | None, docs: str = MODEL_DOCS) -> dict[str, str]:
    """The model group has no YAML: its common keys' help, and for the factory's own keys a pointer to
    its docstring (`docs`: where it is read, with `{model}` for the model's name)."""
    if not model:
        return {}
    from cnnexp.models import COMMON_MODEL_KEYS
    from cnnexp.schemas.models import model_schemas

    comments = {f"model.{f.name}": f"a parameter of model={model}: see {docs.format(model=model)}"
                for f in fields(model_schemas()[model]) if f.name != "name"}
    comments |= {f"model.{key}": help_text for key, (_, _, help_text) in COMMON_MODEL_KEYS.items()}
    comments["model.name"] = "the model (the model=<name> choice)"
    return comments


# ---------------------------------------------------------------- types and defaults from the composed config

def type_name(kind, optional: bool, value) -> str:
    """How a key's type reads: its schema's type, else (keys a schema leaves open, such as a dataset
    source's) the type of its YAML value."""
    if kind is typing.Any or kind is None:
        name = "any" if value is None else f"{type(value).__name__} (not in a schema)"
    elif typing.get_origin(kind) in (list, typing.List):
        (inner,) = typing.get_args(kind) or (typing.Any,)
        name = f"list[{getattr(inner, '__name__', 'any')}]"
    else:
        name = getattr(kind, "__name__", str(kind))
    return f"{name} or null" if optional and kind is not typing.Any and "null" not in name else name


def shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def config_keys(cfg, prefix: str = ""):
    """(dotted key, type, default) of every leaf of a composed config, in its order."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.nodes import ValueNode

    for key in cfg.keys():
        node = cfg._get_node(key)
        path = f"{prefix}{key}"
        if not prefix and key in SKIPPED_ROOTS:
            continue
        if isinstance(node, DictConfig) and len(node) > 0:
            yield from config_keys(node, path + ".")
            continue
        value = node._value() if isinstance(node, ValueNode) else OmegaConf.to_container(node)
        metadata = node._metadata
        yield path, type_name(metadata.ref_type, metadata.optional, value), value


def commented_keys(config_name: str, cfg) -> list[Key]:
    """Every key of a composed config (with its `hydra` node), its type, default and comment."""
    choices = dict(cfg.hydra.runtime.choices)
    comments = key_comments(config_name, choices) | model_comments(choices.get("model"))
    return [Key(path, kind, shown(value), comments.get(path) or parent_comment(path, comments))
            for path, kind, value in config_keys(cfg)]


def keys_help(keys: list[Key]) -> str:
    """`--help`'s keys: `key=default` as typed on a command line, its comment on the lines below."""
    lines = []
    for key in keys:
        lines.append(f"{key.path}={key.default}")
        lines += textwrap.wrap(key.comment, WIDTH, initial_indent="    ", subsequent_indent="    ",
                               break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)
