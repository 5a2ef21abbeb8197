"""Keys a user adds or mistypes: "did you mean" from the keys a config has (edit distance, as git does),
and `+key=value` refused where it adds a key that no part of cnnexp reads.

Which keys may be added (`+group.key=...`):
- under `optimizer` and `scheduler`: any constructor argument of the `_target_` class (checked against its
  signature: schemas/constructors.py);
- under `dataset` of a run's config (eval, predict, viz, export, features read a trained run's dataset):
  checked when the run is opened, against the keys of the run's dataset source (`check_dataset_keys`);
- under `dataset` of a train config: only the keys of the chosen source (conf/dataset/<name>.yaml), so
  in practice none; a source without a YAML there (registered by a plugin) takes any key;
- under `model`: the keys of the model's schema (its factory's parameters);
- under `hydra`: Hydra's own;
- anywhere else (trainer, device, augmentation, the command's own keys): none, every key is in the schema.
"""

import difflib
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cnnexp.utils.errors import UserError
from cnnexp.utils.files import conf_dir

FREE_GROUPS = ("optimizer", "scheduler", "hydra")  # keys passed on to a constructor (or Hydra's)


def flat_keys(node, prefix: str = "") -> list[str]:
    """Every dotted key of a config (or plain dict) that holds a value: trainer.epochs, seed, ..."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False, throw_on_missing=False)
    keys = []
    for key, value in (node or {}).items():
        path = f"{prefix}{key}"
        keys += flat_keys(value, path + ".") if isinstance(value, dict) and value else [path]
    return keys


def closest(key: str, known) -> str | None:
    """The known key nearest to a mistyped one (difflib's ratio, as git's "did you mean"), or None: a key
    beside it first (`dir` for `dri`), else any key (`trainer.epochs` for `traner.epochs`)."""
    known = list(known)
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    near = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if near:
        return siblings[near[0]]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return near[0] if near else None


@cache
def source_keys(name: str) -> frozenset | None:
    """The keys of dataset source `name` (its schema), or None for a source without one (a plugin's)."""
    from cnnexp.schemas.datasets import SOURCE_SCHEMAS

    schema = SOURCE_SCHEMAS.get(name)
    return frozenset(schema.__dataclass_fields__) if schema is not None else None


def check_dataset_keys(dataset_cfg, added) -> None:
    """Keys added to a run's dataset (`+dataset.<key>=...` on eval, predict, ...) must be keys its source
    reads: those of its YAML, or of the run's own config (runs made before a key was renamed)."""
    known = source_keys(str(dataset_cfg.get("name")))
    if known is None:
        return
    known = known | set(dataset_cfg.keys())
    for key in added:
        if key.split(".", 1)[0] not in known:
            near = closest(key, known)
            fix = f"did you mean dataset.{near}?" if near else f"its keys: {', '.join(sorted(known))}"
            raise UserError(f"dataset.{key}: the run's dataset ({dataset_cfg.name}) has no key '{key}'; {fix}")


def added_keys(overrides) -> list[tuple[str, str]]:
    """(key, override as typed) of the `+key=...`/`++key=...` overrides that add keys, not group choices."""
    from hydra.core.config_store import ConfigStore

    added = []
    for override in overrides:
        if not override.startswith("+") or "=" not in override:
            continue
        key = override.split("=", 1)[0].lstrip("+")
        is_group = (Path(conf_dir()) / key).is_dir() or isinstance(ConfigStore.instance().repo.get(key), dict)
        if not ("/" in key or "@" in key or is_group):
            added.append((key, override))
    return added


def is_readable(key: str, cfg) -> bool:
    """Whether an added key is one cnnexp (or a constructor it calls) reads: see the module's list."""
    head, _, rest = key.partition(".")
    if head in FREE_GROUPS and rest:
        return True
    if head == "dataset" and rest:
        name = cfg.dataset.get("name")
        known = source_keys(str(name)) if name is not None else None
        return name is None or known is None or rest.split(".", 1)[0] in known
    if head == "model" and rest:
        from cnnexp.schemas.models import model_schemas

        schema = model_schemas().get(str(cfg.model.get("name")))
        return schema is None or rest.split(".", 1)[0] in schema.__dataclass_fields__
    return False


def command_line(config_name: str) -> str:
    """`cnnexp <this>` of a primary config: train, sweep summarize, data build-hdf5."""
    head, _, rest = config_name.partition("_")
    return f"{head} {rest.replace('_', '-')}".strip()


def unknown_key(key: str, known, config_name: str) -> str:
    """The one line for an override of a key the config lacks: the key meant, or how to add or find one."""
    near = closest(key, known)
    if near:
        return f"unknown key '{key}'; did you mean {near}?"
    if key.split(".", 1)[0] in FREE_GROUPS[:2]:
        return f"unknown key '{key}'; a constructor argument the config lacks is added with +{key}=..."
    return f"unknown key '{key}'; `cnnexp {command_line(config_name)} --help` lists the keys"


def check_added(cfg, overrides, config_name: str) -> None:
    """Refuse a `+key=value` that adds a key no part of cnnexp reads, naming the key meant when one is close."""
    added = added_keys(overrides)
    if not added:
        return
    known = [k for k in flat_keys(cfg) if k not in {key for key, _ in added}]
    for key, override in added:
        if is_readable(key, cfg):
            continue
        near = closest(key, known)
        fix = f"did you mean {near}={override.split('=', 1)[1]}?" if near else f"`cnnexp {command_line(config_name)} --help` lists the keys"
        raise UserError(f"{override} adds a key that no part of cnnexp reads; {fix}")
