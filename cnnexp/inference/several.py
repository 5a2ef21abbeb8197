"""Several named runs answering together for each photo (`run={age:<run>,gender:<run>}`, the age/gender
tutorial's service): a photo is decoded once and its face found once; each run then gets the same face
crop in its own channels, size and resizing, and the answer is one JSON object per photo with a guess
list under each run's name. `cnnexp predict` and `cnnexp serve` both read photos with `photo_inputs`
and answer with `photo_answer`; each scores the inputs its own way (in chunks, or through one batcher
per run)."""

import torch
from PIL import Image

from cnnexp.engine.assemble import Restored
from cnnexp.inference.inputs import find_face, fit_face

NO_FACE = "no face found"


def decode_channels(runs: dict[str, Restored]) -> int:
    """Decode once in colour when any run takes colour (its grey version equals decoding to grey)."""
    return max(restored.image_shape[0] for restored in runs.values())


def photo_inputs(image: Image.Image, runs: dict[str, Restored], detect_face: bool,
                 margin: float) -> tuple[tuple | None, dict[str, torch.Tensor] | None]:
    """(face box or None, {name: the run's uint8 C x H x W input}); the inputs are None when a face was
    asked for and not found. The face is found once; each run crops its own window around it."""
    box = find_face(image) if detect_face else None
    if detect_face and box is None:
        return None, None
    return box, {name: fit_face(image, box, r.image_shape, r.resize, margin) for name, r in runs.items()}


def photo_answer(image: str, box, detect_face: bool, guesses: dict[str, dict] | None) -> dict:
    """One photo's answer: {"image", "face" ([x, y, w, h], only with detect_face), then each run's name
    with {"top": [...], ...}}; without a face, "face": null, "reason": "no face found" and no guesses."""
    row = {"image": image}
    if detect_face:
        row["face"] = [int(v) for v in box] if box is not None else None
    if guesses is None:
        return row | {"reason": NO_FACE}
    return row | guesses
