"""A trained run's best guesses for images: class probabilities (plain or ten-crop) and the top-k
`{label, prob}` lists that `cnnexp predict` prints and `cnnexp serve` answers."""

import torch

from cnnexp.inference.restore import Restored
from cnnexp.inference.scoring import plain_scores, tencrop_scores
from cnnexp.utils.errors import UserError

BATCH = 256  # images per forward pass


def class_probs(restored: Restored, images: torch.Tensor, tencrop: bool = False, mirror: bool = True) -> torch.Tensor:
    """N x K probabilities for uint8 images of the run's training size."""
    images = images.to(restored.device)
    if tencrop:
        return tencrop_scores(restored.model, images, None, restored.pipeline, BATCH, mirror=mirror).probs.cpu()
    return plain_scores(restored.model, images, None, restored.pipeline, BATCH).probs.cpu()


def top_guesses(probs: torch.Tensor, names: list[str], k: int) -> list[list[dict]]:
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[{"label": names[i], "prob": round(p, 4)} for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(values.tolist(), indices.tolist())]


def check_guess_options(cfg) -> None:
    """The keys `predict` and `serve` share: topk, resize, face_margin."""
    if not isinstance(cfg.topk, int) or isinstance(cfg.topk, bool) or cfg.topk < 1:
        raise UserError(f"topk={cfg.topk!r} must be an integer >= 1")
    if cfg.resize not in (None, "aspect", "simple"):
        raise UserError(f"resize={cfg.resize} is not one of: aspect, simple, null (the run's dataset.resize)")
    if not isinstance(cfg.face_margin, (int, float)) or cfg.face_margin < 0:
        raise UserError(f"face_margin={cfg.face_margin!r} must be a number >= 0")
