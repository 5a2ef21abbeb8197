"""Class scores for a split, plain (the centre view) or ten-crop, and the numbers a report shows:
error, rank-1/rank-5 accuracy, loss, a confusion matrix and per-class precision/recall/F1."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnexp.data.transforms import Pipeline, ten_crops
from cnnexp.engine.evaluation import predict_logits
from cnnexp.utils.errors import UserError



@dataclass
class Scores:
    probs: torch.Tensor  # N x K, each row sums to 1; the ranking of the classes
    loss: float | None  # mean cross-entropy of the (averaged) softmax; None without labels


def plain_scores(model, images: torch.Tensor, labels: torch.Tensor | None, pipeline: Pipeline,
                 batch_size: int) -> Scores:
    logits = predict_logits(model, images, pipeline, batch_size)
    return Scores(logits.softmax(1), None if labels is None else F.cross_entropy(logits, labels).item())


def require_crops(pipeline: Pipeline, image_shape) -> None:
    """Ten-crop needs windows smaller than the image: a run trained on whole images has only one."""
    if not pipeline.augmentation.crops:
        _, h, w = image_shape
        raise UserError(
            f"ten-crop needs a run trained on crops, but this run saw whole {h}x{w} images, so its ten crops "
            f"would all be the same image; train with augmentation=patch (e.g. augmentation.crop_size=[{h - 5},{w - 5}])"
        )


@torch.no_grad()
def tencrop_scores(model, images: torch.Tensor, labels: torch.Tensor | None, pipeline: Pipeline, batch_size: int,
                   reduce: str = "mean", mirror: bool = True) -> Scores:
    """`mean`: the softmax averaged over the ten views. `vote`: each view votes for its top class and
    the ranking is by votes, ties broken by the mean softmax (scores = (votes + mean) / 11). The loss is
    the cross-entropy of the mean softmax in both cases. `mirror=False` leaves out the mirrored views,
    for data whose mirror image belongs to another class (digits, text)."""
    model.eval()
    size = pipeline.augmentation.crop_size
    probs, log_mean = [], []
    for chunk in images.split(batch_size):
        views = [pipeline.normalizer(v).contiguous(memory_format=pipeline.memory_format)
                 for v in ten_crops(chunk.float(), size, mirror)]
        log_p = torch.stack([F.log_softmax(model(v).float(), 1) for v in views])  # V x n x K
        chunk_log_mean = torch.logsumexp(log_p, 0) - math.log(len(views))
        log_mean.append(chunk_log_mean)
        probs.append(chunk_log_mean.exp() if reduce == "mean" else vote_scores(log_p, chunk_log_mean.exp()))
    loss = None if labels is None else F.nll_loss(torch.cat(log_mean), labels).item()
    return Scores(torch.cat(probs), loss)


def vote_scores(log_p: torch.Tensor, mean_probs: torch.Tensor) -> torch.Tensor:
    views, _, classes = log_p.shape
    votes = F.one_hot(log_p.argmax(2), classes).sum(0).to(mean_probs.dtype)
    return (votes + mean_probs) / (views + 1)


def summary(scores: Scores, labels: torch.Tensor) -> dict:
    """error, accuracy, rank1, rank5 (None with 5 classes or fewer) and loss, as plain floats."""
    n = len(labels)
    hits = scores.probs.argsort(1, descending=True) == labels[:, None]
    correct = hits[:, 0].sum().item()
    rank5 = hits[:, :5].any(1).sum().item() / n if scores.probs.shape[1] > 5 else None
    return {"error": (n - correct) / n, "accuracy": correct / n, "rank1": correct / n, "rank5": rank5,
            "loss": scores.loss}


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """K x K counts; rows are the true classes, columns the predicted ones."""
    index = labels.cpu() * classes + predicted.cpu()
    return torch.bincount(index, minlength=classes * classes).view(classes, classes)


def per_class(matrix: torch.Tensor, names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class; 0 where a ratio has nothing to divide by."""
    matrix = matrix.double()
    correct, support, predicted = matrix.diag(), matrix.sum(1), matrix.sum(0)
    precision = torch.where(predicted > 0, correct / predicted.clamp_min(1), 0.0)
    recall = torch.where(support > 0, correct / support.clamp_min(1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-12), 0.0)
    return [{"class": name, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for name, p, r, f, s in zip(names, precision.tolist(), recall.tolist(), f1.tolist(), support.tolist())]
