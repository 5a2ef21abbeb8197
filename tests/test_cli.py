"""Every subcommand is a Hydra app: `--help` (its own groups and keys) and `--cfg job` work alike; the
package's imports only point downwards."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from cnnexp.commands import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "cnnexp"
APPS = [("train",), ("eval",), ("predict",), ("serve",), ("sweep",), ("sweep", "summarize"), ("data", "build-hdf5"),
        ("data", "from-video"), ("data", "show"), ("features",), ("probe",), ("viz", "curves"), ("viz", "activations"),
        ("viz", "filters"), ("viz", "gradcam"), ("export",)]


def test_every_command_is_covered():
    assert {app[0] for app in APPS} == set(COMMANDS)


@pytest.mark.parametrize("app", APPS, ids=" ".join)
def test_help_and_cfg_job(cnnexp, workdir, app):
    helped = cnnexp(*app, "--help")
    assert helped.code == 0 and helped.out.startswith(f"cnnexp {' '.join(app)}"), helped.out[:200]
    assert "== Config (key=value) ==" in helped.out
    shown = cnnexp(*app, "--cfg", "job")
    assert shown.code == 0, shown.err
    assert isinstance(yaml.safe_load(shown.out), dict)
    assert not any(workdir.iterdir()), "--help and --cfg write nothing"


@pytest.mark.parametrize("app", APPS, ids=" ".join)
def test_help_explains_every_key_as_the_reference_does(cnnexp, app):
    """Every key `--help` lists has its comment under it, the same text the site's reference shows (both
    read it from conf/ through cnnexp.runner.comments), within 80 columns."""
    from cnnexp.runner.app import compose_with_groups
    from cnnexp.runner.comments import commented_keys

    config_name = {"sweep summarize": "sweep_summarize"}.get(" ".join(app[:2]), app[0].replace("-", "_"))
    if app[0] == "data":
        config_name = f"data_{app[1].replace('-', '_')}"
    overrides = [f"viz={app[1]}"] if app[0] == "viz" else []
    lines = cnnexp(*app, "--help").out.splitlines()
    listed = lines[lines.index("== Config (key=value) ==") + 2:]
    keys = commented_keys(config_name, compose_with_groups(config_name, overrides)[0])
    assert keys and all(key.comment for key in keys)
    for key in keys:
        at = listed.index(f"{key.path}={key.default}")
        below = []
        for line in listed[at + 1:]:
            if not line.startswith("    "):
                break
            below.append(line.strip())
        assert " ".join(below) == " ".join(key.comment.split()), key.path
    assert max(map(len, lines)) <= 80


def test_help_lists_only_the_groups_the_command_uses(cnnexp):
    train = cnnexp("train", "--help").out
    assert "model: " in train and "lenet5" in train and "\nsweep: " not in train
    assert "\nsweep: batch_size, lr, nkerns, shuffle_batch_size" in cnnexp("sweep", "--help").out
    assert "\nmodel: " not in cnnexp("data", "build-hdf5", "--help").out


def test_cfg_job_shows_overrides_and_model_defaults_from_the_signature(cnnexp):
    shown = yaml.safe_load(cnnexp("train", "model=lenet5", "trainer.epochs=3", "--cfg", "job").out)
    assert shown["trainer"]["epochs"] == 3
    assert shown["model"] == {"name": "lenet5", "activation": "tanh", "pool_type": "avg", "dropout": 0.0,
                              "weights": None, "download": True, "preprocess": "weights", "freeze": [],
                              "trainable": None}
    swept = yaml.safe_load(cnnexp("sweep", "optimizer.lr=0.1,0.01", "seeds=3", "--cfg", "job").out)
    assert swept["seeds"] == 3 and swept["optimizer"]["lr"] == 0.001  # the grid is not part of the base config


LAYERS = {"cli": 6, "commands": 5, "apis": 4.8, "runner": 4, "serve": 3.5, "export": 3.45, "viz": 3.4, "inference": 3.3, "features": 3.2,
          "sweeps": 4.5, "schemas": 1.5,
          "engine": 2, "data": 1, "models": 1, "utils": 0}


def module_name(path: Path) -> str:
    parts = ("cnnexp", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def known(name: str) -> str | None:
    """The cnnexp module `name` loads: itself, or the package holding the attribute it names."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def family(package: str) -> list[str]:
    """What a registry over `package` imports on its first lookup: its modules not named _private."""
    return [name for name in MODULES if name.rpartition(".")[0] == package and package_of(name) != name
            and not name.rpartition(".")[2].startswith("_")]


def imported_modules(name: str) -> set[str]:
    """Every cnnexp module `name` loads: `import`s anywhere in it (inside functions and packages too,
    relative ones resolved), a submodule named in a string (what importlib.import_module and the
    commands' table load) and, for `<registry>.discover("pkg")`, every module of that package."""
    found, tree = set(), ast.parse(MODULES[name].read_text())
    file_anchors = {id(node.args[0]) for node in ast.walk(tree)  # resources.files("pkg"): where data files are
                    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "files" and node.args}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package_of(name).split(".")[: len(package_of(name).split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {known(f"{base}.{alias.name}") for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {known(alias.name) for alias in node.names}
        elif isinstance(node, ast.Constant) and node.value in MODULES and "." in node.value \
                and id(node) not in file_anchors:
            found.add(node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "discover":
            found |= set(family(node.args[0].value))
    return found - {None, name}


GRAPH = {name: imported_modules(name) for name in MODULES}


def test_the_import_graph_sees_packages_strings_and_registries():
    assert "cnnexp.models.lenet" in GRAPH["cnnexp.models"]  # the model registry's discovery
    assert "cnnexp.data.sources.mnist" in GRAPH["cnnexp.data"]
    assert "cnnexp.commands.train" in GRAPH["cnnexp.commands"]  # a table of names importlib loads
    assert "cnnexp.apis" in GRAPH["cnnexp"]
    assert "cnnexp.models._layers" in GRAPH["cnnexp.models.lenet"]  # inside the package


def test_imports_only_point_downwards():
    upward = []
    for name, imported in GRAPH.items():
        layer = name.split(".")[1] if name.count(".") else None
        if layer not in LAYERS or MODULES[name].parent == PACKAGE:
            continue
        upward += [f"{name} imports {other}" for other in imported if other.count(".")
                   and other.split(".")[1] in LAYERS and other.split(".")[1] != layer
                   and LAYERS[other.split(".")[1]] >= LAYERS[layer]]
    assert not upward, sorted(upward)


def cycles() -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module, Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(name):
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for other in GRAPH[name]:
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in on_stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            component = []
            while not component or component[-1] != name:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycle_between_modules():
    assert not cycles(), cycles()


def test_the_readme_and_the_layout_page_describe_one_layout():
    root = PACKAGE.parent
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Layout\n") + len("## Layout\n"):]
    page = (root / "docs" / "reference" / "layout.md").read_text()
    body = page[page.index("Where the code lives.\n") + len("Where the code lives.\n"):]
    assert section.startswith(body), "docs/reference/layout.md is README's Layout section, word for word"
    listed = set(re.findall(r"^    cnnexp/(\w+)/", body, re.M))
    assert listed == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
