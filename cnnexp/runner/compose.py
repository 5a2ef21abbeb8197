"""Where the config tree is, and composing it with Hydra's compose API (one-line errors)."""

from cnnexp.utils.errors import ConfigError, UserError
from cnnexp.utils.files import conf_dir  # noqa: F401 (where the config tree is; imported from here by the commands)


def one_line(exc: Exception) -> str:
    """Hydra's multi-line composition errors, folded into one readable line."""
    options = getattr(exc, "options", None)
    missing = getattr(exc, "missing_cfg_file", None)
    if missing and options:
        group, _, choice = missing.rpartition("/")
        return unusable_model(choice) if group == "model" and unusable_model(choice) else \
            f"unknown {group} '{choice}'; choose one of: {', '.join(options)}"
    text = str(exc)
    if text.startswith("Error merging override") and exc.__cause__ is not None:
        reason = str(exc.__cause__).splitlines()[0]
        return f"{text.split('override ', 1)[1]}: {reason}"
    if text.startswith("Error parsing override '"):
        arg = text.split("'")[1]
        return f"cannot read '{arg}': expected key=value (or group=choice); quote values with spaces or commas"
    if unknown_override(exc):
        return f"unknown key '{unknown_override(exc)}'; `cnnexp <command> --help` lists the keys"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(
        ("full_key", "object_type", "reference_type", "Config search path", "provider", "path", "schema"))]
    return "; ".join(lines[:3]) or exc.__class__.__name__


def unusable_model(name: str) -> str | None:
    """Why model `name` has no config (a factory parameter no config key can stand for), if that is why."""
    from cnnexp.schemas.models import unusable_models

    return unusable_models().get(name)


def unknown_override(exc: Exception) -> str | None:
    """The key of an override Hydra could not apply because the config has no such key."""
    text = str(exc)
    return text.split("'")[1] if text.startswith("Could not override '") else None


def known_keys(config_name: str, overrides: list[str], without: str) -> list[str]:
    """The keys of the config composed without the override of key `without` (none if that fails too)."""
    from cnnexp.schemas.keys import flat_keys

    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != without]
    try:
        return flat_keys(compose_config(config_name, rest))
    except UserError:
        return []


def compose_config(config_name: str, overrides: list[str]):
    """The composed config (Hydra's compose API), or a one-line error for a bad override."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cnnexp.schemas.keys import command_line, unknown_key

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        key = unknown_override(exc)
        if key:
            raise ConfigError(unknown_key(key, known_keys(config_name, overrides, key), config_name)) from exc
        raise ConfigError(one_line(exc).replace("<command>", command_line(config_name))) from exc


