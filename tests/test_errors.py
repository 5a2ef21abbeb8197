"""Typed errors: one base class for everything cnnexp raises on purpose, one line on the command line for
each; a bug (an exception that is not a cnnexp error) is an internal error, never advice about config values."""

import pytest

import cnnexp.errors as errors
from cnnexp.models import MODELS
from cnnexp.utils.errors import UserError

TINY = ("trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20", "device=cpu")


def test_every_error_is_a_cnnexp_error_and_bad_input_is_a_user_error():
    for kind in (errors.ConfigError, errors.DataError, errors.RunError, errors.WeightsError):
        assert issubclass(kind, errors.UserError) and kind.exit_code == 2
    for outcome in (errors.UserError, errors.Diverged, errors.Interrupted, errors.PeerLost, errors.Pruned):
        assert issubclass(outcome, errors.CnnexpError)
    assert UserError is errors.UserError  # the old import path names the same class


@pytest.fixture
def broken_lenet(monkeypatch):
    """The lenet factory with a bug: it raises RuntimeError (as a wrong layer size in its code would)."""
    lenet = MODELS.get("lenet")

    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x10 and 20x5)")

    broken.__wrapped__ = lenet  # the same signature: its config keys are checked as lenet's
    monkeypatch.setitem(MODELS._factories, "lenet", broken)


def test_a_bug_in_a_model_factory_is_an_internal_error_not_a_config_hint(broken_lenet, cnnexp, monkeypatch):
    monkeypatch.delenv("CNNEXP_DEBUG", raising=False)
    result = cnnexp("train", *TINY)
    lines = result.err.strip().splitlines()
    assert result.code == 1, result.err
    assert lines == ["internal error: RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x10 and 20x5) "
                     "(set CNNEXP_DEBUG=1 for the traceback)"]
    assert "model.*" not in result.err and "Traceback" not in result.err


def test_cnnexp_debug_shows_the_traceback_of_a_bug(broken_lenet, cnnexp, monkeypatch):
    monkeypatch.setenv("CNNEXP_DEBUG", "1")
    result = cnnexp("train", *TINY)
    assert result.code == 1
    assert "Traceback" in result.err and "in broken" in result.err


def test_a_value_a_factory_refuses_is_a_config_error():
    with pytest.raises(errors.ConfigError, match=r"cannot build model 'lenet' with hidden=-5: model.hidden"):
        MODELS.create("lenet", in_shape=(1, 57, 47), num_classes=40, hidden=-5)
    with pytest.raises(errors.ConfigError, match="model.dropout must be a number in"):
        MODELS.create("lenet5", in_shape=(1, 28, 28), num_classes=10, dropout=1.5)
