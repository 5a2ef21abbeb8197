"""Every subcommand is a Hydra app: `--help` (its own groups and keys) and `--cfg job` work alike; the
package's imports only point downwards."""

import ast
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
    read it from conf/ through cnnexp.config.comments), within 80 columns."""
    from cnnexp.config.app import compose_with_groups
    from cnnexp.config.comments import commented_keys

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


LAYERS = {"cli": 6, "commands": 5, "apis": 4.8, "config": 4, "serve": 3.5, "export": 3.45, "viz": 3.4, "inference": 3.3, "features": 3.2,
          "sweep": 4.5, "schemas": 1.5,
          "engine": 2, "data": 1, "models": 1, "utils": 0}


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [n for n in names if n.startswith("cnnexp.")]


def test_imports_only_point_downwards():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2 or parts[0] not in LAYERS:
            continue
        for module in imported_modules(path):
            layer = module.split(".")[1]
            if layer in LAYERS and layer != parts[0] and LAYERS[layer] >= LAYERS[parts[0]]:
                upward.append(f"{'/'.join(parts)} imports {module}")
    assert not upward, upward
