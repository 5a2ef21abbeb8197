"""The worked examples of docs/how-to/add-model-or-dataset.md run as written: the new model file (with
its frozen-layer protocol, head_prefix and module_aliases) is configured from its signature, trains, and
freezes by its aliases."""

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import torch

HOW_TO = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "add-model-or-dataset.md"


def example(first_line: str) -> str:
    """The how-to's python block that starts with `first_line`."""
    blocks = re.findall(r"```python\n(.*?)```", HOW_TO.read_text(), re.S)
    return next(block for block in blocks if block.startswith(first_line))


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """The how-to's cnnexp/models/tiny.py, imported and configured as if it were in the package."""
    from hydra.core.config_store import ConfigStore

    import cnnexp.runner  # noqa: F401 (puts cnnexp's schemas in Hydra's ConfigStore)
    from cnnexp.models import MODELS
    from cnnexp.schemas.models import model_schemas

    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "tiny.py"
    path.write_text(example("# cnnexp/models/tiny.py"))
    spec = importlib.util.spec_from_file_location("how_to_tiny", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    monkeypatch.setitem(MODELS._factories, "tiny", MODELS._factories.pop("tiny"))  # removed again afterwards
    schema = model_schemas(folder)["tiny"]
    store = ConfigStore.instance()
    monkeypatch.setitem(store.repo, "model", dict(store.repo["model"]))
    store.store(group="model", name="tiny", node=schema)
    return schema


def test_the_new_model_is_configured_from_its_signature(tiny_model):
    fields = {f.name: (f.type, f.default) for f in dataclasses.fields(tiny_model)}
    assert fields["width"] == (int, 16) and fields["dropout"] == (float, 0.0) and fields["act"] == (str, "relu")


def test_the_new_model_freezes_by_its_aliases_and_finds_its_head(tiny_model):
    from cnnexp.models import create_model
    from cnnexp.models.freeze import FrozenBatchNorm, apply_freeze, head_prefix

    model = create_model("tiny", (1, 28, 28), 10, width=8)
    assert head_prefix(model) == "head"
    report = apply_freeze(model, ["body"], None, "tiny")
    assert isinstance(model.stem[1], FrozenBatchNorm)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    assert report.trainable == sum(p.numel() for p in model.head.parameters())


def test_the_new_model_trains_from_the_command_line(cnnexp, workdir, tiny_model):
    result = cnnexp("train", "model=tiny", "model.width=4", "model.freeze=[body]", "trainer.epochs=1",
                    "dataset.limit=80", "trainer.batch_size=20", "hydra.run.dir=run")
    assert result.code == 0, result.err
    saved = torch.load(workdir / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert "stem.1.running_mean" in saved["model"] and saved["config"]["model"]["width"] == 4
    wrong = cnnexp("train", "model=tiny", "model.width=abc")
    assert wrong.code == 2 and "model.width" in wrong.err


def yaml_example(first_line: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", HOW_TO.read_text(), re.S)
    return next(block for block in blocks if block.startswith(first_line))


@pytest.fixture
def npz_source(tmp_path, monkeypatch):
    """The how-to's dataset source: its module imported, its schema added to cnnexp/schemas/datasets.py's
    namespace and SOURCE_SCHEMAS, its YAML and schema in Hydra's ConfigStore, as if all three were in
    the package (removed again afterwards)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    import cnnexp.runner  # noqa: F401 (puts cnnexp's schemas in Hydra's ConfigStore)
    from cnnexp.data.registry import DATASETS
    from cnnexp.schemas import datasets
    from cnnexp.schemas.keys import source_keys

    DATASETS.names()  # the package's sources first, so that ours is the one removed afterwards
    path = tmp_path / "sources" / "npz.py"
    path.parent.mkdir()
    path.write_text(example("# cnnexp/data/sources/npz.py"))
    spec = importlib.util.spec_from_file_location("how_to_npz", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    monkeypatch.setitem(DATASETS._factories, "npz", DATASETS._factories.pop("npz"))
    monkeypatch.setitem(datasets.SOURCE_SCHEMAS, "npz", None)  # so that the example's entry goes again
    exec(example("# cnnexp/schemas/datasets.py"), dict(vars(datasets)))
    store = ConfigStore.instance()
    for group in ("dataset", "dataset_schema"):
        monkeypatch.setitem(store.repo, group, dict(store.repo.get(group, {})))
    store.store(group="dataset_schema", name="npz", node=datasets.SOURCE_SCHEMAS["npz"])
    store.store(group="dataset", name="npz", node=OmegaConf.create(yaml_example("# conf/dataset/npz.yaml")))
    source_keys.cache_clear()
    yield datasets.SOURCE_SCHEMAS["npz"]
    source_keys.cache_clear()


@pytest.fixture
def faces_npz(workdir):
    """100 Olivetti faces of 10 people, saved as the source reads them."""
    import numpy as np

    from cnnexp.data.sources.olivetti import embedded_gif, read_faces

    np.savez(workdir / "faces.npz", images=read_faces(embedded_gif())[:100], labels=np.arange(100) // 10,
             class_names=[f"person_{i}" for i in range(10)])
    return workdir / "faces.npz"


def test_the_new_dataset_trains_from_the_command_line(cnnexp, workdir, npz_source, faces_npz):
    result = cnnexp("train", "dataset=npz", "dataset.file=faces.npz", "trainer.epochs=1", "trainer.batch_size=20",
                    "device=cpu", "device.threads=1", "hydra.run.dir=run")
    assert result.code == 0, result.err
    saved = torch.load(workdir / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["config"]["dataset"]["split"] == [0.8, 0.1, 0.1]
    assert saved["class_names"] == [f"person_{i}" for i in range(10)] and "train/val/test 80/10/10" in result.out


@pytest.mark.parametrize("override, message", [
    ("dataset.split=[0.5,0.5]", "dataset.split=[0.5, 0.5] must be three fractions [train, val, test]"),
    ("dataset.limit=0", "dataset.limit=0 must be an integer >= 1"),
    ("dataset.file=/no/such.npz", "dataset.file=/no/such.npz is not a file"),
    ("+dataset.colour=1", "+dataset.colour=1 adds a key that no part of cnnexp reads"),
])
def test_the_new_dataset_refuses_bad_values_in_one_line(cnnexp, workdir, npz_source, faces_npz, override, message):
    result = cnnexp("train", "dataset=npz", "dataset.file=faces.npz", override, "trainer.epochs=1", "device=cpu")
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.err
    assert sorted(p.name for p in workdir.iterdir()) == ["faces.npz", "sources"]
