"""Typed configs: the model configs made from the factories' signatures, and what the schemas refuse."""

import dataclasses
import re
import typing

from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
import pytest

from cnnexp.schemas.models import model_schemas

FACTORY = '''
from cnnexp.models import register_model

@register_model
def net(in_shape, num_classes, width: int = 8, sizes: list[int] = (3, 5), act="relu", rate=0.5,
        source: str | None = None, layers: list[str] | None = None, *, flag: bool = False):
    """A test factory."""

def helper(x, y, z=1):
    """Not registered: not a model."""
'''


def test_model_config_from_the_signature(tmp_path):
    (tmp_path / "net.py").write_text(FACTORY)
    (tmp_path / "_private.py").write_text(FACTORY.replace("def net", "def hidden"))
    schemas = model_schemas(tmp_path)
    assert list(schemas) == ["net"]
    fields = {f.name: f.type for f in dataclasses.fields(schemas["net"])}
    common = {"weights": typing.Optional[str], "download": bool, "preprocess": str, "freeze": typing.List[str],
              "trainable": typing.Optional[typing.List[str]]}
    assert fields == {"name": str, "width": int, "sizes": typing.List[int], "act": str, "rate": float,
                      "source": typing.Optional[str], "layers": typing.Optional[typing.List[str]], "flag": bool,
                      **common}
    cfg = OmegaConf.structured(schemas["net"])
    assert OmegaConf.to_container(cfg) == {"name": "net", "width": 8, "sizes": [3, 5], "act": "relu", "rate": 0.5,
                                          "source": None, "layers": None, "flag": False, "weights": None,
                                          "download": True, "preprocess": "weights", "freeze": [], "trainable": None}
    with pytest.raises(ValidationError):
        cfg.width = "wide"
    with pytest.raises(ValidationError):
        cfg.sizes = "abc"


def test_every_registered_model_has_a_config():
    from cnnexp.models import list_models

    assert set(model_schemas()) == set(list_models())


def test_a_new_key_in_a_schema_and_the_yaml_reaches_the_engine_typed(tmp_path, monkeypatch):
    """Adding a knob is its value (with a comment) in conf/ and one typed field: nothing else."""
    import shutil
    from dataclasses import dataclass, field

    from hydra.core.config_store import ConfigStore
    from omegaconf import MISSING

    from cnnexp.runner import compose
    from cnnexp.engine.assemble import assemble_training
    from cnnexp.engine.trainer import Trainer
    from cnnexp.schemas import register_schemas, typed
    from cnnexp.schemas.run import TrainerSchema, TrainSchema
    from cnnexp.utils.errors import UserError
    from test_training_knobs import tiny_data

    conf = tmp_path / "conf"
    shutil.copytree(compose.conf_dir(), conf)
    base = conf / "train_base.yaml"
    base.write_text(base.read_text().replace("trainer:\n", "trainer:\n  warmup_steps: 7   # a new knob\n", 1))

    @dataclass
    class NewTrainerSchema(TrainerSchema):
        warmup_steps: int = MISSING

    @dataclass
    class NewTrainSchema(TrainSchema):
        trainer: NewTrainerSchema = field(default_factory=NewTrainerSchema)

    monkeypatch.setattr(compose, "conf_dir", lambda: conf)
    ConfigStore.instance().store(name="train_schema", node=NewTrainSchema)
    try:
        tiny = ["model.nkerns=[2,3]", "model.hidden=8", "model.kernel_size=3", "device=cpu", "trainer.batch_size=8"]
        assert compose.compose_config("train", tiny).trainer.warmup_steps == 7  # the YAML's value
        cfg = compose.compose_config("train", [*tiny, "trainer.warmup_steps=9"])
        assert typed(cfg).trainer.warmup_steps == 9
        trainer = Trainer(assemble_training(cfg, tiny_data()), tmp_path)
        assert trainer.cfg.trainer.warmup_steps == 9 and type(trainer.cfg.trainer.warmup_steps) is int
        with pytest.raises(UserError, match="warmup_steps"):
            compose.compose_config("train", [*tiny, "trainer.warmup_steps=soon"])
    finally:
        register_schemas()


def test_a_saved_config_from_before_a_key_existed_is_upgraded():
    from pathlib import Path

    from cnnexp.schemas import typed, upgrade
    from cnnexp.schemas.run import TrainSchema

    saved = OmegaConf.to_container(OmegaConf.load(Path(__file__).parent / "fixtures" / "run_main_387fe52" /
                                                  "config.yaml"))
    for group, key in (("optimizer", "head_lr_mult"), ("scheduler", "warmup_epochs"), ("trainer", "label_smoothing"),
                       ("device", "precision"), ("model", "freeze")):
        del saved[group][key]
    config = upgrade(saved)
    assert config.optimizer.head_lr_mult == 1.0 and config.scheduler.warmup_epochs == 0
    assert config.trainer.label_smoothing == 0.0 and config.device.precision == "fp32" and config.model.freeze == []
    assert typed(OmegaConf.merge(OmegaConf.structured(TrainSchema), config)).trainer.label_smoothing == 0.0


# ---- keys a user adds or mistypes (cnnexp/schemas/keys.py) -------------------------------------------
@pytest.mark.parametrize("overrides", [
    ("optimizer=sgd", "+optimizer.momentum=0.9"),  # a constructor argument of torch.optim.SGD
    ("scheduler=step", "+scheduler.last_epoch=-1"),
    ("dataset=utkface", "dataset.root=/faces", "dataset.target=age", "++dataset.bins=null"),
    ("dataset=table", "dataset.file=/t.csv", "dataset.fields=[age]", "dataset.path='{user_id}/{face_id}'"),
    ("dataset=folder", "dataset.root=/photos", "dataset.size=[32,48]"),
    ("dataset.name=agebins", "+dataset.fields=false"),  # a source without a YAML in conf/dataset takes any key
    ("++trainer.epochs=3", "++seed=2"),  # `++` of a key the config has only overrides it
])
def test_keys_a_source_or_constructor_reads_compose(overrides):
    from cnnexp.runner.app import check_composes

    check_composes("train", list(overrides))


@pytest.mark.parametrize("overrides, message", [
    (("dataset=folder", "+dataset.pattern=x"), "+dataset.pattern=x adds a key that no part of cnnexp reads"),
    (("dataset=utkface", "+dataset.traget=age"), "did you mean dataset.target=age?"),
    (("+device.thread=2",), "did you mean device.threads=2?"),
    (("+sed=1",), "did you mean seed=1?"),
    (("++trainer.epoch=3",), "++trainer.epoch=3 adds a key that no part of cnnexp reads; did you mean trainer.epochs=3?"),
])
def test_a_key_nothing_reads_is_refused(overrides, message):
    from cnnexp.runner.app import check_composes
    from cnnexp.utils.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        check_composes("train", list(overrides))


def test_every_experiment_composes_with_the_key_checks():
    from cnnexp.runner.app import check_composes
    from cnnexp.runner.compose import conf_dir

    for path in sorted((conf_dir() / "experiment").glob("*.yaml")):
        check_composes("train", [f"experiment={path.stem}"])


def test_every_optimizer_and_scheduler_choice_takes_its_keys():
    """Each conf/optimizer and conf/scheduler file's keys are arguments of its class (or the engine's)."""
    from cnnexp.runner.compose import conf_dir
    from cnnexp.schemas.constructors import check_constructor_keys

    for group in ("optimizer", "scheduler"):
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            check_constructor_keys(group, OmegaConf.load(path))


UNUSABLE = '''
import typing
from torch import nn
from cnnexp.models.registry import register_model

@register_model
def badact(in_shape, num_classes, *, act=nn.ReLU):
    """A class as a default."""

@register_model(name="badtype")
def bad_type(in_shape, num_classes, *, sizes: dict[str, int] = None):
    """An annotation no config key has."""

@register_model
def fine(in_shape, num_classes, *, depth: typing.Optional[int] = None, width: Optional[int] = 3):
    """Optional[int] is int or None, not Any."""
'''


def test_an_unusable_factory_parameter_is_one_line_for_that_model_alone(tmp_path, monkeypatch, cnnexp):
    from cnnexp.schemas import models as model_schemas_module
    from cnnexp.schemas.models import unusable_models

    (tmp_path / "family.py").write_text(UNUSABLE)
    schemas = model_schemas(tmp_path)
    assert list(schemas) == ["fine"]
    fields = {f.name: f.type for f in dataclasses.fields(schemas["fine"])}
    assert fields["depth"] == fields["width"] == typing.Optional[int]
    assert OmegaConf.to_container(OmegaConf.structured(schemas["fine"]))["width"] == 3
    problems = unusable_models(tmp_path)
    assert problems == {
        "badact": "model badact: parameter act of badact(): the default nn.ReLU is not a literal a config can hold; "
                  "give a number, string, bool, None or a list of them (e.g. a name the factory turns into the layer)",
        "badtype": "model badtype: parameter sizes of bad_type(): the annotation dict[str, int] is not a config type "
                   "(int, float, str, bool, list[T], T | None or Optional[T])"}
    monkeypatch.setattr(model_schemas_module, "MODELS_DIR", tmp_path)
    result = cnnexp("train", "model=badact")
    assert result.code == 2 and result.err.strip().splitlines() == [f"error: {problems['badact']}"]
    assert cnnexp("train", "model=lenet", "--cfg", "job").code == 0  # the other models are unaffected


def test_register_schemas_survives_an_unusable_factory(tmp_path, monkeypatch):
    from hydra.core.config_store import ConfigStore

    import cnnexp.runner  # noqa: F401 (puts cnnexp's schemas in Hydra's ConfigStore)
    from cnnexp.schemas import models as model_schemas_module
    from cnnexp.schemas import register_schemas

    (tmp_path / "family.py").write_text(UNUSABLE)
    monkeypatch.setattr(model_schemas_module, "MODELS_DIR", tmp_path)
    repository = ConfigStore.instance().repo["model"]
    monkeypatch.setitem(ConfigStore.instance().repo, "model", dict(repository))
    register_schemas()
    assert "fine.yaml" in ConfigStore.instance().repo["model"] and "badact.yaml" not in ConfigStore.instance().repo["model"]


def test_a_factory_registered_under_another_name_is_configured_by_that_name():
    schemas = model_schemas()
    assert "timm" in schemas and "timm_model" not in schemas
    assert {f.name for f in dataclasses.fields(schemas["timm"])} >= {"arch", "dropout", "drop_path"}


# ---- one place per config fact --------------------------------------------------------------------
def test_every_dataset_yaml_fits_its_schema_without_repeating_its_defaults():
    """conf/dataset/<name>.yaml names its source's schema first, gives every key the schema leaves open
    (a value of the schema's type), and no key whose default the schema holds: the two cannot drift."""
    from cnnexp.runner.compose import conf_dir
    from cnnexp.schemas.datasets import SOURCE_SCHEMAS, source_config

    yamls = {path.stem: OmegaConf.load(path) for path in sorted((conf_dir() / "dataset").glob("*.yaml"))}
    assert set(yamls) == set(SOURCE_SCHEMAS)
    for name, schema in SOURCE_SCHEMAS.items():
        assert list(yamls[name].defaults) == [f"/dataset_schema/{name}@_here_", "_self_"], name
        with_defaults = {f.name for f in dataclasses.fields(schema) if f.default is not dataclasses.MISSING
                         and f.default != "???"}
        assert not with_defaults & set(yamls[name]), f"{name}.yaml repeats the schema's {with_defaults & set(yamls[name])}"
        config = source_config(name)  # raises for a key the schema lacks, a wrong type or a key left open
        assert list(config) == [f.name for f in dataclasses.fields(schema)] and config.name == name


def test_no_primary_yaml_repeats_a_default_its_schema_holds():
    from cnnexp.runner.compose import conf_dir
    from cnnexp.schemas import PRIMARY_SCHEMAS

    for name, schema in PRIMARY_SCHEMAS.items():
        path = conf_dir() / f"{name.removesuffix('_schema')}.yaml"
        held = {f.name for f in dataclasses.fields(schema) if f.default is not dataclasses.MISSING and f.default != "???"}
        assert not held & set(OmegaConf.load(path)), f"{path.name} repeats the schema's {held & set(OmegaConf.load(path))}"


# A default written for each key: as a literal, a parameter default, a `.get(key, default)`, a YAML value.
# conf/experiment/ is left out: an experiment sets a published run's values, not defaults.
DEFAULT_WRITTEN = {
    "dataset.max_pixels": (r"50_?000_?000", "cnnexp/schemas/datasets.py"),
    "resize": (r"""(?<!["'])\bresize\b\s*(?::\s*str\s*)?[:=]\s*["']?(?:aspect|simple)\b|\bRESIZE\s*=\s*["']""",
               "cnnexp/schemas/datasets.py"),
    "model.weights": (r"""get\(\s*["']weights["']|["']weights["']\s*:\s*\(""", "cnnexp/models/__init__.py"),
    "model.download": (r"""get\(\s*["']download["']|["']download["']\s*:\s*\(|\bdownload\s*(?::\s*bool\s*)?=\s*True""",
                       "cnnexp/models/__init__.py"),
    "trainer.early_stopping": (r"""^\s*early_stopping:\s*(?!str\b|dict\b)\w+|early_stopping\s*=\s*["']\w""",
                               "conf/train_base.yaml"),
}


@pytest.mark.parametrize("key", DEFAULT_WRITTEN)
def test_the_four_keys_are_each_defined_once(key):
    """dataset.max_pixels, resize, model.weights (with model.download) and trainer.early_stopping: their
    default is written in one place, which every reader reads (typed, without a fallback of its own)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern, home = DEFAULT_WRITTEN[key]
    files = [p for p in sorted(root.glob("cnnexp/**/*.py")) + sorted(root.glob("conf/**/*.yaml"))
             if "experiment" not in p.parts]
    places = [f"{path.relative_to(root)}:{path.read_text()[:match.start()].count(chr(10)) + 1}"
              for path in files for match in re.finditer(pattern, path.read_text(), re.M)]
    assert len(places) == 1 and places[0].startswith(home + ":"), places
