"""A linear probe on a features file: scikit-learn's `LogisticRegression` in a grid search over C,
refit on the best C, scored on a held-out split; and the fitted probe saved without pickle.

scikit-learn is imported only here, inside the functions that need it, so every other command works
without it. The saved probe is plain arrays in HDF5 (`coef`, `intercept`, `classes`, the scaler's
`mean` and `scale`); `LinearProbe` turns them back into class probabilities equal to
`predict_proba` of the fitted estimator.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnexp.features.store import FeatureSet, to_attr
from cnnexp.utils.errors import UserError

PROBE_FORMAT = "cnnexp-probe"
INSTALL = 'the probe needs scikit-learn; install it with pip install "cnnexp[probe]" (or pip install scikit-learn)'


def require_sklearn():
    try:
        import sklearn
    except ImportError:
        raise UserError(INSTALL) from None
    return sklearn


@dataclass
class FitSet:
    features: np.ndarray
    labels: np.ndarray
    cv: object  # what GridSearchCV's cv= takes: a fold count or a PredefinedSplit
    description: str


def fit_set(features: FeatureSet, fit: str, cv, train_limit: int | None, seed: int) -> FitSet:
    """The images the grid search and the final fit use: train (at most train_limit of them, a seeded
    random subset), or train+val; cv folds over them, or cv=val (the val split is the held-out fold)."""
    from sklearn.model_selection import PredefinedSplit

    parts = ["train"] + (["val"] if fit == "train+val" or cv == "val" else [])
    missing = [p for p in parts if p not in features.splits]
    if missing:
        raise UserError(f"{features.path} has no {missing[0]} split, which fit={fit} cv={cv} needs; "
                        f"it has {', '.join(features.splits)}")
    arrays = [features.arrays("train", subset_rows(features, train_limit, seed))]
    arrays += [features.arrays(p) for p in parts[1:]]
    x = np.concatenate([a for a, _ in arrays])
    y = np.concatenate([b for _, b in arrays])
    check_classes(y, features, "+".join(parts))
    if cv == "val":
        folds = np.concatenate([np.full(len(arrays[0][1]), -1), np.zeros(len(arrays[1][1]), dtype=int)])
        return FitSet(x, y, PredefinedSplit(folds), f"{'+'.join(parts)} ({len(y):,} images; val is the held-out fold)")
    check_folds(y, int(cv), features.label_names)
    return FitSet(x, y, int(cv), f"{'+'.join(parts)} ({len(y):,} images, {cv}-fold cross-validation)")


def subset_rows(features: FeatureSet, limit: int | None, seed: int) -> np.ndarray | None:
    n = features.splits["train"][0][0]
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def check_classes(labels: np.ndarray, features: FeatureSet, split: str) -> None:
    present = np.unique(labels)
    if len(present) < 2:
        only = features.label_names[present[0]] if len(present) else "none"
        raise UserError(f"{features.path}: the {split} split holds one class only ({only}); a probe needs images "
                        "of at least two classes")


def check_folds(labels: np.ndarray, folds: int, names: list[str]) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    if folds < 2:
        raise UserError(f"cv={folds} must be 2 or more folds, or cv=val")
    if counts.min() < folds:
        rare = names[classes[counts.argmin()]]
        raise UserError(f"class {rare} has {counts.min()} image(s) to fit on, fewer than cv={folds} folds; "
                        "use fewer folds (cv=2), cv=val, or more images")


def grid_search(data: FitSet, grid: list[float], scale: bool, max_iter: int, n_jobs: int, threads: int | None):
    """GridSearchCV over C (accuracy), refit on the whole fit set with the best C. `threads` caps the
    BLAS/OpenMP threads of each fit (None: the libraries' default): on a CPU other jobs share, one
    thread a fit is many times faster than threads fighting for the same cores."""
    import warnings

    from threadpoolctl import threadpool_limits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = ([StandardScaler()] if scale else []) + [LogisticRegression(max_iter=max_iter)]
    search = GridSearchCV(make_pipeline(*steps), {"logisticregression__C": list(grid)}, cv=data.cv,
                          scoring="accuracy", n_jobs=n_jobs, refit=True)
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=threads):
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(data.features, data.labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return search, converged


def cv_table(search) -> list[dict]:
    results = search.cv_results_
    return [{"C": float(c), "mean": float(m), "std": float(s)} for c, m, s in
            zip(results["param_logisticregression__C"], results["mean_test_score"], results["std_test_score"])]


def probe_arrays(search, num_classes: int) -> dict:
    """The fitted pipeline as plain arrays (float64)."""
    logreg = search.best_estimator_[-1]
    scaler = search.best_estimator_[0] if len(search.best_estimator_) > 1 else None
    dim = logreg.coef_.shape[1]
    return {"coef": logreg.coef_.astype(np.float64), "intercept": logreg.intercept_.astype(np.float64),
            "classes": logreg.classes_.astype(np.int64),
            "mean": scaler.mean_.astype(np.float64) if scaler is not None else np.zeros(dim),
            "scale": scaler.scale_.astype(np.float64) if scaler is not None else np.ones(dim),
            "num_classes": np.int64(num_classes)}


def full_probs(search, features: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba with a column for every class of the file (0 for classes the fit never saw)."""
    probs = np.zeros((len(features), num_classes))
    probs[:, search.best_estimator_[-1].classes_] = search.predict_proba(features)
    return probs


def save_probe(arrays: dict, attrs: dict, path: Path) -> None:
    """probe.h5: the arrays as datasets, the features file's attributes (how to make features again)
    and the probe's own settings as attributes; written under a temporary name, then renamed."""
    import os

    import h5py

    tmp = path.with_name(f".{path.name}.part")
    with h5py.File(tmp, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        for key, value in attrs.items():
            handle.attrs[key] = to_attr(value)
        handle.attrs["format"] = PROBE_FORMAT  # after the features file's attributes, which carry their own
    os.replace(tmp, path)


def load_probe(path: Path) -> tuple[dict, dict]:
    import h5py

    from cnnexp.features.store import decode_attr

    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != PROBE_FORMAT:
                raise UserError(f"{path} is not a probe written by `cnnexp probe`")
            arrays = {key: handle[key][()] for key in handle}
            attrs = {k: decode_attr(v) for k, v in handle.attrs.items()}
    except OSError as exc:
        raise UserError(f"{path} is not a readable probe file ({exc}); run `cnnexp probe` again") from exc
    return arrays, attrs


class LinearProbe(nn.Module):
    """Features -> logits whose softmax is the fitted probe's predict_proba over all classes:
    multinomial logits, or [0, z] for a binary probe (softmax of that is [1 - sigmoid z, sigmoid z])."""

    def __init__(self, arrays: dict):
        super().__init__()
        for key in ("coef", "intercept", "mean", "scale"):
            self.register_buffer(key, torch.from_numpy(np.asarray(arrays[key], dtype=np.float64)))
        self.register_buffer("classes", torch.from_numpy(np.asarray(arrays["classes"], dtype=np.int64)))
        self.num_classes = int(arrays["num_classes"])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = ((features.double() - self.mean) / self.scale) @ self.coef.T + self.intercept
        if z.shape[1] == 1:
            z = torch.cat([torch.zeros_like(z), z], 1)
        # z.shape[0], not len(z): an int would fix the batch size of an exported graph (cnnexp export)
        logits = torch.full((z.shape[0], self.num_classes), -torch.inf, dtype=z.dtype, device=z.device)
        logits[:, self.classes] = z
        return logits


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
