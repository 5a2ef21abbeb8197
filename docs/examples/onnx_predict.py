"""Classify images with a model written by `cnnexp export`, using only ONNX Runtime, NumPy and Pillow
(no cnnexp, no PyTorch): the JSON beside the model says how to turn a picture into its input.

    python onnx_predict.py outputs/train/<run>/export/model.onnx face.png [more images...]

Prints, per image, the top classes and their probabilities, as `cnnexp predict` does.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load_metadata(model_file: Path) -> dict:
    return json.loads(model_file.with_suffix(".json").read_text())


def model_input(path: str, meta: dict) -> np.ndarray:
    """One image as the 1 x C x H x W float32 the model takes."""
    image = ImageOps.exif_transpose(Image.open(path)).convert(meta["color"])
    height, width = meta["image_size"]
    if meta["resize"] == "aspect":  # scale to cover, centre-crop
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    elif image.size != (width, height):  # simple: stretch
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32).reshape(height, width, -1)
    _, crop_h, crop_w = meta["input_shape"]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    pixels = pixels[top : top + crop_h, left : left + crop_w]
    x = (pixels / 255.0 - np.float32(meta["mean"])) / np.float32(meta["std"])
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def main(model_file: str, *images: str, topk: int = 2) -> None:
    meta = load_metadata(Path(model_file))
    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    for path in images:
        probs = softmax(session.run(None, {meta["input_name"]: model_input(path, meta)})[0])[0]
        best = np.argsort(-probs)[:topk]
        print(path, "  ".join(f"{meta['class_names'][i]} {probs[i]:.4f}" for i in best))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
