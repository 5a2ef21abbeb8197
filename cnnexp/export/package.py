"""One export: the model file and its metadata written under temporary names, the exported model run
against the PyTorch one on real images of the run's dataset, and only then both renamed into place.
A failed check (or any error) leaves nothing behind."""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cnnexp.export.metadata import describe
from cnnexp.export.runtime import OnnxModel
from cnnexp.export.writers import quiet, write_model
from cnnexp.utils.errors import UserError
from cnnexp.utils.files import atomic_path

CHECK_IMAGES = 16  # real images the exported model is compared on
TOLERANCE = 1e-4  # max |logit difference| accepted (fp32)


@dataclass
class Agreement:
    images: int
    max_abs_diff: float  # over the finite logits (a probe gives -inf to classes it never saw)
    top1_agree: int  # images whose top class is the same in both


@dataclass
class Exported:
    model_file: Path
    metadata_file: Path
    metadata: dict


def export_run(restored, fmt: str, out: Path, run, opset: int, dynamic_batch: bool) -> Exported:
    metadata_file = out.with_suffix(".json")  # model.torchscript.pt -> model.torchscript.json
    make_parent(out)
    batch = check_batch(restored)
    model = restored.model.eval()
    with atomic_path(out) as model_tmp, atomic_path(metadata_file) as metadata_tmp:
        write_model(model, batch[:2] if dynamic_batch else batch[:1], model_tmp, fmt, opset, dynamic_batch)
        agreement = compare(model, load_exported(model_tmp, fmt), batch, dynamic_batch)
        metadata = describe(restored, fmt, out, run, opset if fmt == "onnx" else None, dynamic_batch)
        metadata["check"] = asdict(agreement)
        metadata_tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    return Exported(out, metadata_file, metadata)


def make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.writable"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write out={out} ({exc.strerror or exc}); give a path in a folder you can write to") from exc


def check_batch(restored) -> torch.Tensor:
    """The model input for up to CHECK_IMAGES real images of the run's dataset (test split first), at
    least two (the exporter needs a batch of 2 to keep the batch size free)."""
    data = restored.load_data()
    split = next((data.splits[s] for s in ("test", "val", "train") if s in data.splits and len(data.splits[s])), None)
    if split is None:
        raise UserError("the run's dataset has no images to check the export on; give dataset.root= of its data")
    images = split.images[:CHECK_IMAGES]
    images = torch.as_tensor(images) if not isinstance(images, torch.Tensor) else images
    if len(images) == 1:
        images = images.repeat(2, 1, 1, 1)
    with torch.no_grad():
        return restored.pipeline(images.cpu(), train=False).float().contiguous()


def load_exported(path: Path, fmt: str) -> torch.nn.Module:
    if fmt == "onnx":
        return OnnxModel(path)
    with quiet():
        return torch.jit.load(str(path), map_location="cpu")


@torch.no_grad()
def compare(model: torch.nn.Module, exported: torch.nn.Module, batch: torch.Tensor, dynamic_batch: bool) -> Agreement:
    """Both models on the batch (a file with a fixed batch size of 1: image by image; with a free batch
    size also on the first image alone); an error when the logits differ by more than TOLERANCE or a
    top class differs."""
    expected = model(batch).float()
    got = torch.cat([exported(chunk).float() for chunk in batch.split(len(batch) if dynamic_batch else 1)])
    diff = logit_difference(expected, got)
    if dynamic_batch:  # the same file at batch size 1 too
        diff = max(diff, logit_difference(expected[:1], exported(batch[:1]).float()))
    agree = int((expected.argmax(1) == got.argmax(1)).sum())
    agreement = Agreement(len(batch), diff, agree)
    if not diff <= TOLERANCE or agree != len(batch):
        raise UserError(f"the exported model does not answer like the PyTorch model on {len(batch)} images "
                        f"(max |logit difference| {diff:.3g} > {TOLERANCE:g} or top-1 agrees on {agree}/{len(batch)}); "
                        "nothing was written; report it with the model name")
    return agreement


def logit_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max |a - b| over finite entries; infinite where one is finite and the other is not."""
    finite = torch.isfinite(a)
    if not torch.equal(finite, torch.isfinite(b)):
        return math.inf
    return float((a[finite] - b[finite]).abs().max()) if finite.any() else 0.0
