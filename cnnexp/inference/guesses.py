"""A trained run's best guesses for images: class probabilities (plain or ten-crop) and the top-k
`{label, prob}` lists that `cnnexp predict` prints and `cnnexp serve` answers."""

import torch

from cnnexp.engine.assemble import Restored
from cnnexp.inference.scoring import plain_scores, tencrop_scores

BATCH = 256  # images per forward pass


def class_probs(restored: Restored, images: torch.Tensor, tencrop: bool = False, mirror: bool = True) -> torch.Tensor:
    """N x K probabilities for uint8 images of the run's training size."""
    images = images.to(restored.device)
    with restored.precision.autocast():
        if tencrop:
            return tencrop_scores(restored.model, images, None, restored.pipeline, BATCH, mirror=mirror).probs.cpu()
        return plain_scores(restored.model, images, None, restored.pipeline, BATCH).probs.cpu()


def top_guesses(probs: torch.Tensor, names: list[str], k: int) -> list[list[dict]]:
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[{"label": names[i], "prob": round(p, 4)} for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(values.tolist(), indices.tolist())]

