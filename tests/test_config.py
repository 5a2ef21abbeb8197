"""Typed configs: the model configs made from the factories' signatures, and what the schemas refuse."""

import dataclasses
import typing

from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
import pytest

from cnnexp.config.schemas import model_schemas

FACTORY = '''
from cnnexp.models import register_model

@register_model
def net(in_shape, num_classes, width: int = 8, sizes: list[int] = (3, 5), act="relu", rate=0.5,
        weights: str | None = None, freeze: list[str] | None = None, *, flag: bool = False):
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
    assert fields == {"name": str, "width": int, "sizes": typing.List[int], "act": str, "rate": float,
                      "weights": typing.Optional[str], "freeze": typing.Optional[typing.List[str]], "flag": bool}
    cfg = OmegaConf.structured(schemas["net"])
    assert OmegaConf.to_container(cfg) == {"name": "net", "width": 8, "sizes": [3, 5], "act": "relu", "rate": 0.5,
                                          "weights": None, "freeze": None, "flag": False}
    with pytest.raises(ValidationError):
        cfg.width = "wide"
    with pytest.raises(ValidationError):
        cfg.sizes = "abc"


def test_every_registered_model_has_a_config():
    from cnnexp.models import list_models

    assert set(model_schemas()) == set(list_models())
