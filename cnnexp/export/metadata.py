"""What a program needs to feed an exported model without cnnexp, written beside it as JSON: decode,
resize to `image_size` (as `resize`), centre-crop to `input_shape`, scale to 0..1, subtract `mean`,
divide by `std`, NCHW float32; `output` names what comes out (logits: softmax gives the probabilities)."""

from pathlib import Path

from cnnexp._version import __version__
from cnnexp.data.transforms import Normalizer


def unit_mean_std(normalizer: Normalizer, channels: int) -> tuple[list[float], list[float]]:
    """The run's normalisation as (pixels / 255 - mean) / std per channel, whatever its mode: `none`
    feeds 0..255 (std 1/255), `scale` 0..1, `mean` subtracts the 0..255 mean, `standardize` divides too."""
    zeros, ones = [0.0] * channels, [1.0] * channels
    if normalizer.mode == "none":
        return zeros, [1 / 255] * channels
    if normalizer.mode == "scale":
        return zeros, ones
    mean = [m / 255 for m in normalizer.mean]
    std = [1 / 255] * channels if normalizer.mode == "mean" else [s / 255 for s in normalizer.std]
    return mean, std


def describe(restored, fmt: str, model_file: Path, run, opset: int | None, dynamic_batch: bool) -> dict:
    """The metadata of one export (`check` is added once the exported file has been compared)."""
    channels, crop_h, crop_w = restored.pipeline.augmentation.out_shape
    mean, std = unit_mean_std(restored.pipeline.normalizer, channels)
    return {
        "format": fmt,
        "file": model_file.name,
        "input_name": "input",
        "input_shape": [channels, crop_h, crop_w],
        "image_size": list(restored.image_shape[1:]),
        "resize": restored.resize,
        "crop": "center",
        "color": "L" if channels == 1 else "RGB",
        "mean": mean,
        "std": std,
        "class_names": list(restored.class_names),
        "output": "logits",
        "dynamic_batch": dynamic_batch,
        "opset": opset,
        "model": restored.config.model.name,
        "run": str(Path(str(run)).expanduser().resolve()) if run is not None else None,
        "checkpoint": str(restored.checkpoint_path.resolve()),
        "epoch": restored.epoch,
        "cnnexp_version": __version__,
    }
