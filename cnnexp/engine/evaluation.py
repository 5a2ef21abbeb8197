"""Running a model over a whole split without gradients, in batches sized to a memory budget."""

import math

import torch
import torch.nn.functional as F

from cnnexp.data.image_data import Split
from cnnexp.data.stream import labelled_chunks
from cnnexp.data.transforms import Pipeline
from cnnexp.utils.errors import UserError


MAX_EVAL_BATCH = 1000  # small images: more per forward pass saves little
FLOAT_COPIES = 3  # an evaluation batch as float: the centre view, normalised, in the memory format
LIVE_ACTIVATIONS = 3  # a layer's input and output, and a skip connection's tensor, alive at once


@torch.no_grad()
def largest_activation(model: torch.nn.Module, in_shape: tuple) -> int:
    """The most elements any layer outputs for one image of `in_shape` (one forward pass, on the
    model's device, in evaluation mode)."""
    sizes = [math.prod(in_shape)]

    def note(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            sizes.append(output[0].numel())

    leaves = [module for module in model.modules() if next(module.children(), None) is None]
    hooks = [module.register_forward_hook(note) for module in leaves]
    was_training = model.training
    parameter = next(model.parameters(), None)
    model.eval()
    try:
        model(torch.zeros(1, *in_shape, device=parameter.device if parameter is not None else "cpu"))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return max(sizes)


def eval_batch_size(given: int | None, budget_mb: float, model: torch.nn.Module, image_shape: tuple,
                    in_shape: tuple) -> int:
    """`trainer.eval_batch_size` when the user gave one; otherwise as many images as fit `budget_mb`:
    per image its uint8 pixels, their float copies and the live activations of the largest layer
    (float32; at most MAX_EVAL_BATCH)."""
    if given is not None:
        return int(given)
    pixels = math.prod(image_shape)
    per_image = pixels + 4 * FLOAT_COPIES * pixels + 4 * LIVE_ACTIVATIONS * largest_activation(model, in_shape)
    return max(1, min(MAX_EVAL_BATCH, int(budget_mb * 2**20 // per_image)))


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, pipeline: Pipeline, batch_size: int) -> torch.Tensor:
    """Logits for uint8 images (centre view, normalised), batch by batch, in evaluation mode."""
    was_training = model.training
    model.eval()
    logits = [model(pipeline(chunk, train=False)).float() for chunk in images.split(batch_size)]
    model.train(was_training)
    return torch.cat(logits)


@torch.no_grad()
def evaluate(model, split: Split, pipeline: Pipeline, batch_size: int,
             skipped: list[str] | None = None) -> tuple[float, float]:
    """Mean cross-entropy and error rate (a fraction) on a split, over the images that could be read:
    a streamed folder with dataset.check=false skips unreadable files, their reasons added to `skipped`."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for images, chunk_labels in labelled_chunks(split, batch_size, [] if skipped is None else skipped):
        logits.append(model(pipeline(images, train=False)).float())
        labels.append(chunk_labels)
    model.train(was_training)
    if not logits:
        raise UserError("no image of the evaluated split could be read; check the folder (dataset.check=true)")
    logits, labels = torch.cat(logits), torch.cat(labels)
    loss = F.cross_entropy(logits, labels).item()
    error = (logits.argmax(1) != labels).double().mean().item()
    return loss, error


@torch.no_grad()
def evaluate_shard(model, split: Split, pipeline: Pipeline, batch_size: int, group,
                   skipped: list[str] | None = None) -> tuple[float, float]:
    """`evaluate` over the ranks of a data-parallel run: each rank runs its share of the chunks,
    then one all-reduce of (loss sum, errors, images) gives every rank the split's exact numbers.
    `skipped` gets the reasons for the unreadable files this rank's chunks left out."""
    from cnnexp.engine.distributed import shard_starts

    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=split.labels.device)
    starts = list(shard_starts(len(split.labels), batch_size, group.rank, group.world_size))
    for images, labels in labelled_chunks(split, batch_size, [] if skipped is None else skipped, starts):
        logits = model(pipeline(images, train=False)).float()
        sums += torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(),
                             (logits.argmax(1) != labels).sum().double(),
                             torch.tensor(float(len(labels)), dtype=torch.float64, device=sums.device)])
    model.train(was_training)
    loss_sum, errors, count = group.all_reduce(sums.cpu()).tolist()
    if not count:
        raise UserError("no image of the evaluated split could be read; check the folder (dataset.check=true)")
    return loss_sum / count, errors / count
