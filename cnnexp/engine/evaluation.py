"""Running a model over a whole split without gradients."""

import torch
import torch.nn.functional as F

from cnnexp.data.image_data import Split
from cnnexp.data.transforms import Pipeline


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, pipeline: Pipeline, batch_size: int) -> torch.Tensor:
    """Logits for uint8 images (centre view, normalised), batch by batch, in evaluation mode."""
    was_training = model.training
    model.eval()
    logits = [model(pipeline(chunk, train=False)).float() for chunk in images.split(batch_size)]
    model.train(was_training)
    return torch.cat(logits)


def evaluate(model, split: Split, pipeline: Pipeline, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and error rate (a fraction) on a split."""
    logits = predict_logits(model, split.images, pipeline, batch_size)
    loss = F.cross_entropy(logits, split.labels).item()
    error = (logits.argmax(1) != split.labels).double().mean().item()
    return loss, error
