"""Class scores for a split, plain (the centre view) or ten-crop, and the numbers a report shows:
error, rank-1/rank-5 accuracy, loss, a confusion matrix and per-class precision/recall/F1; for ordered
classes (age groups) one-off accuracy; and the same numbers per subgroup of a field of the images
(`eval by=race`), with the gap between the best and the worst subgroup."""

import math
import re
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


def summary(scores: Scores, labels: torch.Tensor, ordered: bool = False) -> dict:
    """error, accuracy, rank1, rank5 (None with 5 classes or fewer) and loss, as plain floats; with
    ordered classes (age groups) also one_off, after accuracy (the paper's exact accuracy)."""
    n = len(labels)
    ranking = scores.probs.argsort(1, descending=True)
    hits = ranking == labels[:, None]
    correct = hits[:, 0].sum().item()
    rank5 = hits[:, :5].any(1).sum().item() / n if scores.probs.shape[1] > 5 else None
    numbers = {"error": (n - correct) / n, "accuracy": correct / n}
    if ordered:
        numbers["one_off"] = one_off(ranking[:, 0], labels)
    return numbers | {"rank1": correct / n, "rank5": rank5, "loss": scores.loss}


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


# ---------------------------------------------------------------- ordered classes and subgroups

UNCERTAIN_BELOW = 30  # a subgroup with fewer images is marked uncertain: its accuracy can swing by 10+ points


def one_off(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Levi and Hassner's one-off accuracy for ordered classes (age groups): the share of guesses that are
    the true class or one of its neighbours in class order, |predicted - true| <= 1."""
    return ((predicted.cpu() - labels.cpu()).abs() <= 1).double().mean().item()


def require_field(fields: dict[str, list[str]], name: str) -> list[str]:
    """The values of field `name` (by=<name>), or a one-line error listing the fields there are."""
    if name in fields:
        return fields[name]
    if not fields:
        raise UserError(f"by={name}: this dataset has no fields to break the results down by (only its classes); "
                        "remove by= (fields come with sources such as dataset=utkface: age, gender, race)")
    raise UserError(f"by={name}: the dataset has no field '{name}'; use one of: {', '.join(sorted(fields))}")


def group_numbers(labels: torch.Tensor, predicted: torch.Tensor, top_p: torch.Tensor, ordered: bool) -> dict:
    """n, correct, accuracy, error, one_off (ordered classes only) and mean top-1 probability of some images."""
    n = len(labels)
    correct = (predicted == labels).sum().item()
    numbers = {"n": n, "correct": correct, "accuracy": correct / n, "error": (n - correct) / n}
    if ordered:
        numbers["one_off"] = one_off(predicted, labels)
    numbers["mean_prob"] = top_p.double().mean().item()
    numbers["uncertain"] = n < UNCERTAIN_BELOW
    return numbers


def subgroups(labels: torch.Tensor, predicted: torch.Tensor, top_p: torch.Tensor, values: list[str],
              ordered: bool = False, class_names: list[str] | None = None) -> list[dict]:
    """The numbers of group_numbers() for each value of a field (one string per image, in the images'
    order), one row per value in value_order()."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} field values for {len(labels)} images")
    labels, predicted, top_p = labels.cpu(), predicted.cpu(), top_p.cpu()
    rows = []
    for value in value_order(values, class_names):
        mask = torch.tensor([v == value for v in values])
        rows.append({"value": value, **group_numbers(labels[mask], predicted[mask], top_p[mask], ordered)})
    return rows


def value_order(values: list[str], class_names: list[str] | None = None) -> list[str]:
    """The distinct values, in class order when they are class names (by=<the target's own field>), else
    in natural order: numbers inside compare as numbers, so "(4, 6)" comes before "(15, 20)"."""
    distinct = set(values)
    if class_names and distinct <= set(class_names):
        return [c for c in class_names if c in distinct]
    return sorted(distinct, key=natural_key)


def natural_key(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text) if part]


def gap(rows: list[dict], metric: str = "accuracy") -> dict | None:
    """The best and the worst subgroup by `metric` and the difference in points; None with one subgroup.
    Groups marked uncertain (too small to trust) are left out when two or more others remain, else all
    count and the gap is marked uncertain. Ties go to the larger group (the steadier number)."""
    if len(rows) < 2:
        return None
    steady = [r for r in rows if not r["uncertain"]]
    if len(steady) >= 2:
        compared, left_out = steady, [r["value"] for r in rows if r["uncertain"]]
    else:
        compared, left_out = rows, []
    best = max(compared, key=lambda r: (r[metric], r["n"]))
    worst = min(compared, key=lambda r: (r[metric], -r["n"]))
    return {"metric": metric, "best": best["value"], "best_value": best[metric], "best_n": best["n"],
            "worst": worst["value"], "worst_value": worst[metric], "worst_n": worst["n"],
            "points": 100 * (best[metric] - worst[metric]), "left_out": left_out,
            "uncertain": any(r["uncertain"] for r in compared)}
