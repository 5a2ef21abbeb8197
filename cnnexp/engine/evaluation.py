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


@torch.no_grad()
def evaluate_shard(model, split: Split, pipeline: Pipeline, batch_size: int, group) -> tuple[float, float]:
    """`evaluate` over the ranks of a data-parallel run: each rank runs its share of the chunks,
    then one all-reduce of (loss sum, errors, images) gives every rank the split's exact numbers."""
    from cnnexp.engine.distributed import shard_starts

    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=split.labels.device)
    n = len(split.labels)
    for start in shard_starts(n, batch_size, group.rank, group.world_size):
        stop = min(start + batch_size, n)
        images = split.images[start:stop]
        labels = split.labels[start:stop]
        logits = model(pipeline(images, train=False)).float()
        sums += torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(),
                             (logits.argmax(1) != labels).sum().double(), torch.tensor(float(stop - start),
                                                                                   dtype=torch.float64,
                                                                                   device=sums.device)])
    model.train(was_training)
    loss_sum, errors, count = group.all_reduce(sums.cpu()).tolist()
    return loss_sum / count, errors / count
