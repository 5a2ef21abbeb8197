"""The site's reference pages, generated from the code when the site is built (an mkdocs hook), so they
cannot drift: every command's keys with the type its schema gives (cnnexp/schemas), the default the
config tree composes (conf/) and the comment beside the key in its YAML file; every config group with
its choices; every model with its keys and docstring.

    mkdocs build --strict          (or mkdocs serve) runs it; nothing is written to docs/
    python docs/hooks/reference.py train     prints one page, to read or diff
"""

import ast
import sys
from dataclasses import fields
from pathlib import Path

from cnnexp.runner.comments import (SKIPPED_ROOTS, Key, config_keys, key_comments, model_comments, parent_comment,
                                    shown, type_name, yaml_comments)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
MODEL_DOCS = "[its docstring](../groups.md#model-{model})"

# (page, how `cnnexp` spells the command, its primary config, the overrides that pick it)
COMMAND_PAGES = [
    ("train", "train", "train", []),
    ("sweep", "sweep", "sweep", []),
    ("sweep-summarize", "sweep summarize", "sweep_summarize", []),
    ("eval", "eval", "eval", []),
    ("predict", "predict", "predict", []),
    ("serve", "serve", "serve", []),
    ("export", "export", "export", []),
    ("features", "features", "features", []),
    ("probe", "probe", "probe", []),
    *[(f"viz-{p}", f"viz {p}", "viz", [f"viz={p}"]) for p in ("curves", "activations", "filters", "gradcam")],
    *[(f"data-{t}", f"data {t}", f"data_{t.replace('-', '_')}", []) for t in ("build-hdf5", "from-video", "show")],
]
GROUP_KEYS_SHOWN = ("dataset", "optimizer", "scheduler", "augmentation", "device")  # groups whose choices' keys are listed


def typed_view(cfg):
    """The config with its schema's types: `viz` composes one config for every picture and types it
    with the picture's schema when it runs (commands/viz.py's check), as here."""
    from omegaconf import OmegaConf

    from cnnexp.schemas import PICTURE_SCHEMAS

    picture = cfg.get("picture")
    if picture not in PICTURE_SCHEMAS:
        return cfg
    job = OmegaConf.create({k: v for k, v in cfg.items() if k not in SKIPPED_ROOTS})
    return OmegaConf.merge(OmegaConf.structured(PICTURE_SCHEMAS[picture]), job)


def command_keys(config_name: str, overrides: list[str]) -> tuple[list[Key], dict, object]:
    """Every key of a command's composed config (as `cnnexp <command> --cfg job` prints them), the
    config groups it uses with their options, and the composed config (its `hydra.help`)."""
    from cnnexp.runner.app import compose_with_groups
    from cnnexp.schemas import register_schemas

    register_schemas()
    cfg, groups = compose_with_groups(config_name, overrides)
    choices = dict(cfg.hydra.runtime.choices)
    comments = key_comments(config_name, choices) | model_comments(choices.get("model"), MODEL_DOCS)
    keys = [Key(path, kind, shown(value), comments.get(path) or parent_comment(path, comments)) for path, kind, value in config_keys(typed_view(cfg))]
    return keys, {g: (choices.get(g), options) for g, options in groups.items()}, cfg


# ---------------------------------------------------------------- pages

def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def keys_table(keys: list[Key]) -> list[str]:
    lines = ["| key | type | default | comment |", "|---|---|---|---|"]
    lines += [f"| `{k.path}` | {cell(k.type)} | `{cell(k.default)}` | {cell(k.comment)} |" for k in keys]
    return lines


def command_page(spelled: str, config_name: str, overrides: list[str]) -> str:
    keys, groups, cfg = command_keys(config_name, overrides)
    help_cfg = cfg.hydra.help
    lines = [f"# cnnexp {spelled}", "", str(help_cfg.header), "",
             f"Its config is `conf/{config_name}.yaml`" + (f" with `{' '.join(overrides)}`" if overrides else "")
             + "; `cnnexp " + spelled + " --help` prints the same keys and `--cfg job` the resolved config.", ""]
    if groups:
        lines += ["## Config groups", "", "| group | default | choices |", "|---|---|---|"]
        lines += [f"| `{g}` | `{shown(default)}` | {', '.join(f'`{o}`' for o in options)} |"
                  for g, (default, options) in groups.items()]
        lines += ["", "The keys of every choice: [Config groups](../groups.md).", ""]
    lines += ["## Keys", "", "With the default choice of each group; types come from the schemas in "
              "`cnnexp/schemas/`, comments from the YAML files in `conf/`.", "", *keys_table(keys), ""]
    footer = str(help_cfg.footer).strip()
    if footer:
        lines += ["## Examples", "", "```", footer, "```", ""]
    return "\n".join(lines)


def group_choice_keys(group: str, choice: str, default_comments: dict[str, str]) -> list[Key]:
    """The keys one choice of a group sets, with the train config's types; a key the choice's file
    leaves uncommented has the meaning (and comment) it has in the group's default choice."""
    keys, _, _ = command_keys("train", [f"{group}={choice}"])
    keys = [k for k in keys if k.path.startswith(group + ".")]
    for key in keys:
        key.comment = key.comment or default_comments.get(key.path, "")
    target = next((k.default for k in keys if k.path == f"{group}._target_"), None)
    for key in (k for k in keys if not k.comment):
        if key.path == f"{group}.name":
            key.comment = f"which {group} this is (the {group}=<name> choice)"
        elif key.path == f"{group}._target_":
            key.comment = "the class built with these keys as its arguments (hydra.utils.instantiate)"
        elif target not in (None, "null"):
            key.comment = f"an argument of {target} (PyTorch's documentation)"
    return keys


def model_docs() -> dict[str, str]:
    """{model name: the factory's docstring}, read with ast (no torch import)."""
    from cnnexp.schemas.models import registered_factories

    return {name: " ".join((ast.get_docstring(node) or "").split()) for name, node in registered_factories()}


def model_section() -> list[str]:
    from cnnexp.models import COMMON_MODEL_KEYS
    from cnnexp.schemas.models import model_schemas

    lines = ["## model", "", "A model's keys are its factory's keyword parameters (`cnnexp/models/`), then the keys "
             "every model takes:", "", "| key | type | default | comment |", "|---|---|---|---|"]
    for key, (annotation, default, help_text) in COMMON_MODEL_KEYS.items():
        lines.append(f"| `model.{key}` | {cell(annotation)} | `{shown(list(default) if isinstance(default, tuple) else default)}` | {cell(help_text)} |")
    docs = model_docs()
    for name, schema in model_schemas().items():
        own = [f for f in fields(schema) if f.name != "name" and f.name not in COMMON_MODEL_KEYS]
        lines += ["", f"### model={name} {{#model-{name}}}", "", docs.get(name, ""), ""]
        if own:
            lines += ["| key | type | default |", "|---|---|---|"]
            for f in own:
                default = f.default_factory() if callable(f.default_factory) else f.default
                lines.append(f"| `model.{f.name}` | {cell(type_name(f.type, False, default))} | `{cell(shown(default))}` |")
    return lines


def groups_page() -> str:
    default_keys, groups, _ = command_keys("train", [])
    default_comments = {k.path: k.comment for k in default_keys}
    lines = ["# Config groups", "", "Each group is a folder of `conf/` with one YAML per choice (`group=choice` on "
             "the command line); every key of a choice can be overridden (`group.key=value`).", ""]
    for group in GROUP_KEYS_SHOWN:
        lines += [f"## {group}", ""]
        for choice in groups[group][1]:
            header, _ = yaml_comments(CONF / group / f"{choice}.yaml")
            lines += [f"### {group}={choice}", "", header, "", *keys_table(group_choice_keys(group, choice, default_comments)), ""]
    lines += model_section() + [""]
    for group in ("experiment", "sweep"):
        lines += [f"## {group}", "", "| choice | what |", "|---|---|"]
        for path in sorted((CONF / group).glob("*.yaml")):
            lines.append(f"| `{group}={path.stem}` | {cell(yaml_comments(path)[0])} |")
        lines.append("")
    return "\n".join(lines)


def commands_index() -> str:
    import contextlib
    import io

    from cnnexp.cli import print_usage

    usage = io.StringIO()
    with contextlib.redirect_stdout(usage):
        print_usage()
    lines = ["# Commands", "", "```", "$ cnnexp --help", usage.getvalue().rstrip(), "```", "",
             "| command | page |", "|---|---|"]
    lines += [f"| `cnnexp {spelled}` | [{spelled}]({page}.md) |" for page, spelled, _, _ in COMMAND_PAGES]
    return "\n".join(lines) + "\n"


# Bad input a user types, answered before anything runs: the page shows what cnnexp prints today.
ERROR_EXAMPLES = [
    ["train", "dataset=cifar"], ["train", "model=resnet9000"], ["train", "experiment=nope"],
    ["train", "trainer.epoch=3"], ["train", "trainer.epochs=abc"], ["train", "trainer.epochs=0"],
    ["train", "optimizer.lr=-0.1"], ["train", "device.precision=fp8"], ["train", "trainer.resume=/no/such/run"],
    ["eval", "split=holdout"], ["eval", "run=/no/such/run"], ["predict", "run=/no/such/run", "image=face.png"],
    ["predict", "run={}", "image=face.png"], ["serve", "run={age:/no/such/run,gender:/no/such/run2}"],
    ["serve", "port=-1"], ["serve", "token="], ["serve", "tls_key=key.pem"], ["serve", "tls_cert=/no/such/cert.pem"],
    ["sweep", "seeds=0"], ["viz", "sparkles"], ["data", "unpack"], ["frobnicate"],
]


def error_lines_page() -> str:
    """Each example run in this process (in an empty temporary folder), with its exit code and the
    line it printed on stderr."""
    import contextlib
    import io
    import os
    import tempfile

    from cnnexp.cli import main

    lines = ["# Error lines", "", "What cnnexp answers to bad input, generated by running each command when the "
             "site is built (exit code 2: one `error:` line on stderr, nothing written). Every command "
             "checks its whole config like this before it starts; `tests/test_bad_input.py` holds the full "
             "corpus, with files, checkpoints and images.", "", "| command | exit | stderr |", "|---|---|---|"]
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            for args in ERROR_EXAMPLES:
                err = io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(list(args))
                lines.append(f"| `cnnexp {' '.join(args)}` | {code} | `` {cell(err.getvalue().strip())} `` |")
        finally:
            os.chdir(here)
    return "\n".join(lines) + "\n"


def generated_pages() -> dict[str, str]:
    """{path under docs/: markdown} of every generated reference page."""
    pages = {"reference/commands/index.md": commands_index(), "reference/groups.md": groups_page(),
             "reference/error-lines.md": error_lines_page()}
    for page, spelled, config_name, overrides in COMMAND_PAGES:
        pages[f"reference/commands/{page}.md"] = command_page(spelled, config_name, overrides)
    return pages


# ---------------------------------------------------------------- the mkdocs hook

def on_files(files, config):
    """Add the generated pages to the site (in memory; nothing is written to docs/)."""
    from mkdocs.structure.files import File

    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_nav(nav, config, files):
    """A generated page missing from mkdocs.yml's nav is an error (strict builds would only log it)."""
    listed = {page.file.src_uri for page in nav.pages}
    missing = [f.src_uri for f in files if f.src_uri.startswith("reference/") and f.is_documentation_page()
               and f.src_uri not in listed]
    if missing:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"reference pages missing from mkdocs.yml's nav: {', '.join(missing)}")
    return nav


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    wanted = sys.argv[1] if len(sys.argv) > 1 else "train"
    print(generated_pages().get(f"reference/commands/{wanted}.md") or generated_pages()[f"reference/{wanted}.md"])
