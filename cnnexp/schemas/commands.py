"""The schemas of the commands that read runs or files (eval, predict, serve, features, probe, viz, the
data tools, sweep summarize), with their range checks beside the fields."""

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from cnnexp.schemas.checks import Checked, at_least, one_of, positive
from cnnexp.schemas.datasets import (check_channels, check_max_pixels, check_size, check_split, max_pixels_field,
                                     resize_field)
from cnnexp.schemas.run import DeviceSchema, check_model
from cnnexp.utils.errors import UserError
from cnnexp.utils.choices import RESIZES, SPLITS

TENCROP_REDUCTIONS = ("mean", "vote")  # eval.tencrop_reduce: average the ten views' softmax, or let them vote
BACKENDS = ("torch", "onnxruntime")  # what runs the served model's forward pass
EXPORT_FORMATS = ("onnx", "torchscript")
COMPRESSIONS = (None, "gzip", "lzf")  # data build-hdf5's compression


@dataclass
class SummarizeSettings:
    metric: Optional[str] = MISSING


@dataclass
class SweepSummarizeSchema:
    dir: Optional[str] = MISSING
    sweep: SummarizeSettings = field(default_factory=SummarizeSettings)


@dataclass
class RunChoice:
    """A trained run to read (its folder, or a checkpoint file) and which of its checkpoints."""
    run: Optional[str] = MISSING
    checkpoint: Optional[str] = MISSING
    which: str = MISSING


@dataclass
class EvalSettings(Checked):
    tencrop: bool = MISSING
    tencrop_reduce: str = MISSING
    tencrop_mirror: bool = MISSING
    max_images: int = MISSING

    def check(self) -> None:
        one_of("eval.tencrop_reduce", self.tencrop_reduce, TENCROP_REDUCTIONS)
        at_least("eval.max_images", self.max_images, 0)


@dataclass
class EvalBatch(Checked):
    batch_size: Optional[int] = MISSING

    def check(self) -> None:
        at_least("trainer.batch_size", self.batch_size, 1, optional=True)


@dataclass
class EvalSchema(RunChoice, Checked):
    split: str = MISSING
    by: Optional[str] = MISSING
    eval: EvalSettings = field(default_factory=EvalSettings)
    trainer: EvalBatch = field(default_factory=EvalBatch)
    dataset: Any = MISSING
    device: DeviceSchema = field(default_factory=DeviceSchema)

    def check(self) -> None:
        one_of("split", self.split, SPLITS)


@dataclass
class GuessSchema(RunChoice, Checked):
    """What predict and serve share: the run to load and how its guesses for an image are made. `run`
    is one run folder, or named runs (`run={age:<run>,gender:<run>}`) answering together for each photo."""
    run: Any = MISSING  # a run folder (str), or {name: run folder}
    topk: int = MISSING
    tencrop: bool = MISSING
    tencrop_mirror: bool = MISSING
    detect_face: bool = MISSING
    face_margin: float = MISSING
    resize: Optional[str] = MISSING
    max_pixels: int = max_pixels_field("an image whose header gives more pixels (width x height) is refused "
                                       "before decoding (serve: 413)")
    device: DeviceSchema = field(default_factory=DeviceSchema)

    def check(self) -> None:
        check_run_names(self.run, self.checkpoint)
        at_least("topk", self.topk, 1)
        if self.resize not in (None, *RESIZES):
            raise UserError(f"resize={self.resize} is not one of: {', '.join(RESIZES)}, null (the run's dataset.resize)")
        at_least("face_margin", self.face_margin, 0, integer=False)
        check_max_pixels("max_pixels", self.max_pixels)


RUN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a named run's key in run={...}: a JSON key beside image and face
RESERVED_NAMES = ("image", "face", "reason", "top", "model_ms", "batch")  # the keys of an answer of one run or several
NAMED_RUNS_EXAMPLE = "run={age:outputs/train/<run>,gender:outputs/train/<run>}"


def check_run_names(run, checkpoint) -> None:
    """run= is one run folder, or a non-empty dict whose keys are names and whose values are run folders."""
    if isinstance(run, list):
        raise UserError(f"run= takes one run folder, or named runs as {NAMED_RUNS_EXAMPLE}; not a list")
    if not isinstance(run, dict):
        return
    if not run:
        raise UserError(f"run={{}} names no runs; give one run folder (run=outputs/train/<run>) or named runs "
                        f"({NAMED_RUNS_EXAMPLE})")
    for name, folder in run.items():
        if not RUN_NAME.fullmatch(str(name)) or name in RESERVED_NAMES:
            raise UserError(f"run.{name}: '{name}' cannot name a run; use letters, digits and _ starting with a "
                            f"letter, other than {', '.join(RESERVED_NAMES)} (e.g. {NAMED_RUNS_EXAMPLE})")
        if not isinstance(folder, (str, int, float)) or isinstance(folder, bool):
            raise UserError(f"run.{name}={folder} is not a run folder; give its path, e.g. {NAMED_RUNS_EXAMPLE}")
    if checkpoint is not None:
        raise UserError("checkpoint= applies to one run; with named runs give each run's folder in run={...}")


@dataclass
class PredictSchema(GuessSchema):
    image: Any = MISSING  # a file, folder or glob, a list of them, or olivetti
    json: bool = MISSING

    def check(self) -> None:
        if self.image is None or self.image == []:
            raise UserError("say which images: image=<file, folder or glob>, image=[a.jpg,b.jpg] (or image=olivetti)")
        if isinstance(self.image, (dict, bool)) or (isinstance(self.image, list) and
                                                    not all(isinstance(i, (str, int, float)) for i in self.image)):
            raise UserError(f"image={self.image} is not a file, folder or glob; name several as image=[a.jpg,b.jpg]")
        super().check()
        if isinstance(self.run, dict) and str(self.image) == "olivetti":
            raise UserError("image=olivetti checks one run; give run=<run folder>, or image files for named runs")


@dataclass
class ServeSchema(GuessSchema):
    host: str = MISSING
    port: int = MISSING
    max_batch: int = MISSING
    max_wait_ms: float = MISSING
    max_upload_mb: float = MISSING
    read_timeout_s: float = MISSING
    workers: int = MISSING
    access_log: Any = MISSING  # false | true (uvicorn's text lines) | json
    backend: str = MISSING
    onnx: Optional[str] = MISSING
    token: Optional[str] = MISSING  # null: CNNEXP_SERVE_TOKEN, else generated off loopback; none: no token
    tls_cert: Optional[str] = MISSING
    tls_key: Optional[str] = MISSING

    def check(self) -> None:
        super().check()
        one_of("backend", self.backend, BACKENDS)
        if not (isinstance(self.access_log, bool) or self.access_log == "json"):
            raise UserError(f"access_log={self.access_log} is not one of: false, true (uvicorn's text lines), json "
                            "(one JSON object a request)")
        if self.token is not None:
            check_token("token", self.token)
        if self.tls_key is not None and self.tls_cert is None:
            raise UserError(f"tls_key={self.tls_key} needs its certificate: give tls_cert= too "
                            "(tls_cert=cert.pem tls_key=key.pem)")
        if isinstance(self.run, dict) and self.onnx is not None:
            raise UserError("onnx= names one run's file; with named runs each run's export/model.onnx is used "
                            "(run `cnnexp export run=<run>` for each)")
        positive("max_batch", self.max_batch, integer=True)
        positive("max_wait_ms", self.max_wait_ms, integer=False, or_zero=True)
        positive("max_upload_mb", self.max_upload_mb, integer=False)
        positive("read_timeout_s", self.read_timeout_s, integer=False)
        positive("workers", self.workers, integer=True)
        if not 0 <= self.port <= 65535:
            raise UserError(f"port={self.port!r} must be a whole number from 0 to 65535")


TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an Authorization header carries as is


def check_token(source: str, token: str) -> str:
    """A token given by `source` (token= or the environment variable) that a client can send."""
    where = f"{source}=" if source == "token" else source
    if token == "":
        raise UserError(f"{where} is empty; give a long random token (e.g. {source}=$(openssl rand -hex 24)), leave "
                        "it out for a generated one, or token=none for a service without one")
    if not TOKEN_CHARACTERS.fullmatch(token):
        raise UserError(f"{where} holds a space or a character other than visible ASCII, which an Authorization "
                        f"header cannot carry; give letters, digits and punctuation (e.g. $(openssl rand -hex 24))")
    return token


@dataclass
class ExportSchema(RunChoice, Checked):
    format: str = MISSING
    out: Optional[str] = MISSING
    opset: int = MISSING
    dynamic_batch: bool = MISSING
    resize: Optional[str] = MISSING
    dataset: Any = MISSING

    def check(self) -> None:
        one_of("format", self.format, EXPORT_FORMATS)
        at_least("opset", self.opset, 18)
        if self.resize not in (None, *RESIZES):
            raise UserError(f"resize={self.resize} is not one of: {', '.join(RESIZES)}, null (the run's dataset.resize)")


@dataclass
class BuildHdf5Schema(Checked):
    src: Optional[str] = MISSING
    out: Optional[str] = MISSING
    size: Any = MISSING  # an int or [height, width]
    channels: int = MISSING
    resize: str = resize_field()
    split: list[float] = MISSING
    seed: int = MISSING
    compression: Optional[str] = MISSING
    buffer: int = MISSING
    workers: int = MISSING
    strict: bool = MISSING
    max_pixels: int = max_pixels_field()

    def check(self) -> None:
        check_size("size", self.size)
        check_channels("channels", self.channels)
        one_of("resize", self.resize, RESIZES)
        check_split("split", self.split)
        at_least("seed", self.seed, 0)
        if self.compression not in COMPRESSIONS:
            raise UserError(f"compression={self.compression} is not one of: none (null), gzip, lzf")
        at_least("buffer", self.buffer, 1)
        at_least("workers", self.workers, 0)
        check_max_pixels("max_pixels", self.max_pixels)


@dataclass
class BuildShardsSchema(Checked):
    src: Optional[str] = MISSING
    out: Optional[str] = MISSING
    size: Any = MISSING  # null, an int or [height, width]
    channels: int = MISSING
    resize: str = resize_field()
    quality: int = MISSING
    split: list[float] = MISSING
    seed: int = MISSING
    shard_size: int = MISSING
    shard_mb: int = MISSING
    check: bool = MISSING
    workers: int = MISSING
    strict: bool = MISSING
    max_pixels: int = max_pixels_field()

    def __post_init__(self) -> None:
        """Runs the checks itself: this tool's key `check` takes the name of the method."""
        if not self.is_template():
            self.check_keys()

    def check_keys(self) -> None:
        check_size("size", self.size, optional=True)
        check_channels("channels", self.channels)
        one_of("resize", self.resize, RESIZES)
        if not 1 <= self.quality <= 100:
            raise UserError(f"quality={self.quality} must be 1 to 100")
        check_split("split", self.split)
        at_least("seed", self.seed, 0)
        at_least("shard_size", self.shard_size, 1)
        at_least("shard_mb", self.shard_mb, 1)
        at_least("workers", self.workers, 0)
        check_max_pixels("max_pixels", self.max_pixels)


@dataclass
class FromVideoSchema:
    video: Optional[str] = MISSING
    label: Optional[str] = MISSING
    out: str = MISSING
    every: int = MISSING
    width: int = MISSING
    height: int = MISSING
    margin: float = MISSING
    grey: bool = MISSING
    min_face: int = MISSING
    scale_factor: float = MISSING
    min_neighbors: int = MISSING


@dataclass
class FeaturesSchema(RunChoice, Checked):
    model: Any = MISSING
    out: Optional[str] = MISSING
    overwrite: bool = MISSING
    layer: Optional[str] = MISSING
    pool: Optional[str] = MISSING
    max_features: int = MISSING
    splits: list[str] = MISSING
    batch_size: int = MISSING
    write_buffer: int = MISSING
    tencrop: bool = MISSING
    tencrop_mirror: bool = MISSING
    mean: Optional[list[float]] = MISSING
    std: Optional[list[float]] = MISSING
    seed: int = MISSING
    dataset: Any = MISSING
    device: DeviceSchema = field(default_factory=DeviceSchema)

    def check(self) -> None:
        if (self.run is None and self.checkpoint is None) == (self.model is None):
            raise UserError("say which network: run=<train run folder> (or checkpoint=<file.pt>), or model=<name> "
                            "with dataset=<name> (e.g. model=resnet18 model.weights=IMAGENET1K_V1 dataset=folder)")
        for key in ("batch_size", "write_buffer", "max_features"):
            at_least(key, getattr(self, key), 1)
        dataset_name = self.dataset.get("name") if isinstance(self.dataset, dict) else self.dataset.name  # typed by its schema
        if self.model is not None and not dataset_name:
            raise UserError(f"model={self.model.name} needs a dataset: dataset=folder dataset.root=<images> "
                            "(or dataset=mnist, hdf5, olivetti)")
        if self.model is not None:
            check_model(self.model)
        if self.model is None and (self.mean is not None or self.std is not None):
            raise UserError("mean=/std= apply to model=<name>; a run uses the normalisation it trained with")


@dataclass
class ProbeSchema:
    features: Optional[str] = MISSING
    C: list[float] = MISSING
    cv: Any = MISSING  # a number of folds or "val"
    fit: str = MISSING
    train_limit: Optional[int] = MISSING
    scale: bool = MISSING
    max_iter: int = MISSING
    n_jobs: int = MISSING
    threads: Optional[int] = MISSING
    split: str = MISSING
    seed: int = MISSING

# ---- viz: one schema per picture ------------------------------------------------------------------
@dataclass
class VizSchema(RunChoice):
    """The keys every picture takes (conf/viz.yaml)."""
    picture: Optional[str] = MISSING
    out: Optional[str] = MISSING
    tensorboard: bool = MISSING
    dataset: Any = MISSING
    device: DeviceSchema = field(default_factory=DeviceSchema)


@dataclass
class CurvesSchema(VizSchema):
    run: Any = MISSING  # one run folder or glob, or a list of them


@dataclass
class ActivationsSchema(VizSchema, Checked):
    image: Optional[str] = MISSING
    layers: Any = MISSING  # a layer name or a list of them
    resize: Optional[str] = MISSING

    def check(self) -> None:
        one_of("resize", self.resize, (None, *RESIZES))


@dataclass
class FiltersSchema(VizSchema, Checked):
    layer: Optional[str] = MISSING
    channels: Any = MISSING  # a channel number or a list of them
    steps: int = MISSING
    lr: float = MISSING
    jitter: int = MISSING
    blur: float = MISSING
    blur_every: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        at_least("steps", self.steps, 1)
        at_least("lr", self.lr, 0, integer=False)
        at_least("jitter", self.jitter, 0)
        at_least("blur", self.blur, 0, integer=False)
        at_least("blur_every", self.blur_every, 1)
        at_least("seed", self.seed, 0)


@dataclass
class GradcamSchema(VizSchema, Checked):
    image: Optional[str] = MISSING
    target: str = MISSING
    layer: Optional[str] = MISSING
    alpha: float = MISSING
    topk: int = MISSING
    resize: Optional[str] = MISSING

    def check(self) -> None:
        at_least("alpha", self.alpha, 0, integer=False)
        if self.alpha > 1:
            raise UserError(f"alpha={self.alpha} must be between 0 and 1")
        at_least("topk", self.topk, 1)
        one_of("resize", self.resize, (None, *RESIZES))


PICTURE_SCHEMAS = {"curves": CurvesSchema, "activations": ActivationsSchema, "filters": FiltersSchema,
                   "gradcam": GradcamSchema}
