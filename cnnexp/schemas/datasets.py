"""One schema per dataset source (conf/dataset/<name>.yaml names its schema first in its defaults
list), selected by the source's name: a key's type and range check live in its field here, so a typo
in any dataset key is one `error:` line while the config is composed or made typed, before any data is
read. The YAML holds the values and their comments (tests/test_config.py checks every YAML against its
schema); the keys that several sources share with one default (`max_pixels`, `resize`) have that
default here only, with their help in the field's metadata."""

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from cnnexp.schemas.checks import Checked, at_least, one_of, positive
from cnnexp.utils.choices import RESIZES
from cnnexp.utils.errors import UserError

MAX_PIXELS = 50_000_000  # width x height; a 50-megapixel camera's photos pass
RESIZE = "aspect"  # the default of every resize key (one of cnnexp.utils.choices.RESIZES)
NORMALIZATIONS = ("none", "scale", "mean", "standardize")
HDF5_MEANS = ("stored", "train")

MAX_PIXELS_HELP = "an image whose header gives more pixels (width x height) is unreadable, never decoded"
RESIZE_HELP = "aspect (scale the short side, centre-crop) | simple (stretch)"


def max_pixels_field(help_text: str = MAX_PIXELS_HELP):
    return field(default=MAX_PIXELS, metadata={"help": help_text})


def resize_field():
    return field(default=RESIZE, metadata={"help": RESIZE_HELP})


def field_help(schema) -> dict[str, str]:
    """{key: help} of the fields whose default (and so whose comment) lives in the schema, not in YAML."""
    return {f.name: f.metadata["help"] for f in fields(schema) if "help" in f.metadata}


# ---- checks shared by several sources and by `data build-hdf5` -----------------------------------
def check_size(key: str, size, optional: bool = False) -> None:
    """An int (square) or [height, width] of positive ints."""
    if size is None and optional:
        return
    pair = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and
            all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise UserError(f"{key}={size!r} must be a positive int or [height, width], e.g. 64 or [70, 50]")


def check_split(key: str, ratios) -> None:
    """Three fractions [train, val, test], train above 0."""
    if not (len(ratios) == 3 and min(ratios) >= 0 and ratios[0] > 0):
        raise UserError(f"{key}={list(ratios)} must be three fractions [train, val, test], e.g. [0.8, 0.1, 0.1]")


def check_channels(key: str, channels: int) -> None:
    if channels not in (1, 3):
        raise UserError(f"{key}={channels} must be 1 (grey) or 3 (RGB)")


def check_max_pixels(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{key}={value!r} must be a positive number of pixels (width x height), "
                        f"e.g. {key}={MAX_PIXELS}")


def check_in_memory(value) -> None:
    if value not in (True, False, "auto"):
        raise UserError(f"dataset.in_memory={value} is not one of: true, false, auto")


def check_image_files(schema) -> None:
    """The keys of the sources that decode image files (folder, table, utkface)."""
    check_size("dataset.size", schema.size)
    check_channels("dataset.channels", schema.channels)
    one_of("dataset.resize", schema.resize, RESIZES)
    check_split("dataset.split", schema.split)
    check_max_pixels("dataset.max_pixels", schema.max_pixels)
    check_in_memory(schema.in_memory)
    positive("dataset.memory_limit_mb", schema.memory_limit_mb, integer=False)
    at_least("dataset.workers", schema.workers, 0)


@dataclass
class SourceSchema(Checked):
    """What every source has: its name, how its pixels are normalised, a cap on images per split."""

    def check(self) -> None:
        one_of("dataset.normalize", self.normalize, NORMALIZATIONS)
        at_least("dataset.limit", self.limit, 1, optional=True)


@dataclass
class FolderSchema(SourceSchema):
    name: str = MISSING
    root: Optional[str] = MISSING
    size: Any = MISSING  # an int or [H, W]
    channels: int = MISSING
    resize: str = resize_field()
    split: list[float] = MISSING
    strict: bool = MISSING
    check: bool = MISSING
    max_pixels: int = max_pixels_field()
    normalize: str = MISSING
    in_memory: Any = MISSING  # true | false | auto
    memory_limit_mb: float = MISSING
    workers: int = MISSING
    limit: Optional[int] = MISSING

    def __post_init__(self) -> None:
        """Runs the checks itself: this source's key `check` takes the name of the method."""
        if not self.is_template():
            SourceSchema.check(self)
            check_image_files(self)


@dataclass
class Hdf5Schema(SourceSchema):
    name: str = MISSING
    path: Optional[str] = MISSING
    normalize: str = MISSING
    mean: str = MISSING
    in_memory: Any = MISSING
    memory_limit_mb: float = MISSING
    workers: int = MISSING
    limit: Optional[int] = MISSING

    def check(self) -> None:
        super().check()
        one_of("dataset.mean", self.mean, HDF5_MEANS)
        check_in_memory(self.in_memory)
        positive("dataset.memory_limit_mb", self.memory_limit_mb, integer=False)
        at_least("dataset.workers", self.workers, 0)


@dataclass
class MnistSchema(SourceSchema):
    name: str = MISSING
    root: Optional[str] = MISSING  # null only while composing: a command's `dataset: {root: null}` of overrides
    download: bool = MISSING
    val_size: int = MISSING
    normalize: str = MISSING
    limit: Optional[int] = MISSING

    def check(self) -> None:
        super().check()
        if self.root is None:
            raise UserError("dataset.root=null: give the folder that holds (or will hold) MNIST/raw, "
                            "e.g. dataset.root=data/mnist")
        at_least("dataset.val_size", self.val_size, 0)


@dataclass
class OlivettiSchema(SourceSchema):
    name: str = MISSING
    root: Optional[str] = MISSING
    size: Any = MISSING  # null (57x47), an int or [H, W]
    per_person: list[int] = MISSING
    normalize: str = MISSING
    limit: Optional[int] = MISSING

    def check(self) -> None:
        super().check()
        check_size("dataset.size", self.size, optional=True)
        if len(self.per_person) != 3 or sum(self.per_person) != 10 or min(self.per_person) < 0:
            raise UserError(f"dataset.per_person={self.per_person} must be three counts summing to 10, e.g. [8,1,1]")


@dataclass
class LabelledFiles:
    """The keys of the image-file sources labelled by a table or by file names, after their own."""
    size: Any = MISSING
    channels: int = MISSING
    resize: str = resize_field()
    split: list[float] = MISSING
    strict: bool = MISSING
    max_pixels: int = max_pixels_field()
    normalize: str = MISSING
    in_memory: Any = MISSING
    memory_limit_mb: float = MISSING
    workers: int = MISSING
    limit: Optional[int] = MISSING


@dataclass
class TableKeys:
    name: str = MISSING
    file: Optional[str] = MISSING
    root: Optional[str] = MISSING
    sep: Optional[str] = MISSING
    path: str = MISSING
    target: str = MISSING
    bins: Any = MISSING  # null | [[label, low, high], ...]
    fields: Optional[list[str]] = MISSING


@dataclass
class UtkfaceKeys:
    name: str = MISSING
    root: Optional[str] = MISSING
    target: str = MISSING
    bins: Any = MISSING
    pattern: str = MISSING


@dataclass
class TableSchema(SourceSchema, LabelledFiles, TableKeys):  # fields: TableKeys' then LabelledFiles'
    def check(self) -> None:
        super().check()
        check_image_files(self)


@dataclass
class UtkfaceSchema(SourceSchema, LabelledFiles, UtkfaceKeys):
    def check(self) -> None:
        super().check()
        check_image_files(self)


@dataclass
class ShardsSchema(SourceSchema):
    name: str = MISSING
    path: Optional[str] = MISSING
    size: Any = MISSING  # null (the size the shards were built at), an int or [H, W]
    channels: Optional[int] = MISSING  # null: the shards'
    resize: str = resize_field()
    readers: int = MISSING
    shuffle_buffer: int = MISSING
    max_pixels: int = max_pixels_field()
    normalize: str = MISSING
    workers: int = MISSING
    limit: Optional[int] = MISSING

    def check(self) -> None:
        super().check()
        check_size("dataset.size", self.size, optional=True)
        if self.channels is not None:
            check_channels("dataset.channels", self.channels)
        one_of("dataset.resize", self.resize, RESIZES)
        at_least("dataset.readers", self.readers, 1)
        at_least("dataset.shuffle_buffer", self.shuffle_buffer, 1)
        check_max_pixels("dataset.max_pixels", self.max_pixels)
        at_least("dataset.workers", self.workers, 0)


SOURCE_SCHEMAS = {"folder": FolderSchema, "hdf5": Hdf5Schema, "mnist": MnistSchema, "olivetti": OlivettiSchema,
                  "shards": ShardsSchema, "table": TableSchema, "utkface": UtkfaceSchema}


def check_source(dataset_cfg) -> None:
    """A dataset node (a run's saved config with `dataset.*` overrides from eval, predict, ...) checked
    against its source's schema: the same one-line errors as at training, before any data is read. A
    source without a schema (a plugin's) is its own judge."""
    schema = SOURCE_SCHEMAS.get(str(dataset_cfg.get("name")))
    if schema is None:
        return
    try:
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), dataset_cfg))
    except UserError:
        raise
    except Exception as exc:  # OmegaConf's type errors: the key and the value that does not fit
        key = getattr(exc, "full_key", "") or "?"
        raise UserError(f"dataset.{key}: {str(exc).splitlines()[0]}") from None


def source_config(name: str, **values):
    """Source `name`'s config as `dataset=<name>` composes it (its YAML over its schema, then `values`),
    checked; for code and tests that build a dataset without composing a whole config."""
    from cnnexp.utils.files import conf_dir

    yaml_values = OmegaConf.load(f"{conf_dir()}/dataset/{name}.yaml")
    yaml_values.pop("defaults", None)
    config = OmegaConf.merge(OmegaConf.structured(SOURCE_SCHEMAS[name]), yaml_values, values)
    OmegaConf.to_object(config)
    return config
