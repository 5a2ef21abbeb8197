"""`cnnexp probe`: logistic regression on a features file with a grid search over C, scored on the
test split with the same tables and files as `cnnexp eval`; the probe is saved without pickle and
`cnnexp predict run=<probe run>` uses it (see cnnexp/features/probe.py)."""

from pathlib import Path

from rich.table import Table

from cnnexp.runner.app import app_main
from cnnexp.utils.errors import UserError
from cnnexp.utils.files import write_json_atomic
from cnnexp.utils.runs import current_run_dir, save_config

CONFIG_NAME = "probe"
HELP = "logistic-regression probe on a features file (a grid over C)"
main = app_main("probe", __name__)  # cnnexp probe ... -> this module's Hydra app
FITS = ("train", "train+val")


def run(cfg) -> dict:
    # torch, sklearn, matplotlib and the features layer are imported where used: `--help` and `--cfg job` go without
    from cnnexp.features.probe import fit_set, full_probs, grid_search, require_sklearn, timed
    from cnnexp.features.store import read_features

    check_options(cfg)
    require_sklearn()
    from hydra.utils import to_absolute_path

    features = read_features(Path(to_absolute_path(str(Path(cfg.features).expanduser()))))
    if cfg.split not in features.splits:
        raise UserError(f"{features.path} has no {cfg.split} split to score on; it has {', '.join(features.splits)} "
                        "(split=val scores on the val split)")
    data = fit_set(features, cfg.fit, cfg.cv, cfg.train_limit, cfg.seed)
    out = current_run_dir()
    save_config(cfg, out)
    (search, converged), seconds = timed(grid_search, data, list(cfg.C), cfg.scale, cfg.max_iter,
                                         cfg.n_jobs, cfg.threads)
    test_x, test_y = features.arrays(cfg.split)
    probs = full_probs(search, test_x, len(features.label_names))
    return report(cfg, features, data, search, converged, seconds, probs, test_y, out)


def check_options(cfg) -> None:
    if not cfg.features:
        raise UserError("say which features: features=<file.h5> (made by `cnnexp features`)")
    grid = list(cfg.C) if not isinstance(cfg.C, (int, float)) else [cfg.C]
    if not grid or any(isinstance(c, bool) or not isinstance(c, (int, float)) or c <= 0 for c in grid):
        raise UserError(f"C={grid} must list positive numbers, e.g. C=[0.01,0.1,1.0]")
    if cfg.fit not in FITS:
        raise UserError(f"fit={cfg.fit} is not one of: {', '.join(FITS)}")
    if not (cfg.cv == "val" or (isinstance(cfg.cv, int) and not isinstance(cfg.cv, bool))):
        raise UserError(f"cv={cfg.cv!r} must be a number of folds (e.g. 3) or val")
    if cfg.split not in ("val", "test"):
        raise UserError(f"split={cfg.split} is not one of: test, val")
    if cfg.split == "val" and (cfg.fit == "train+val" or cfg.cv == "val"):
        raise UserError("split=val cannot score a probe that was fitted or selected on val; use split=test")
    for key in ("max_iter", "n_jobs"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or (cfg[key] < 1 and cfg[key] != -1):
            raise UserError(f"{key}={cfg[key]!r} must be a positive integer")
    if cfg.threads is not None and (not isinstance(cfg.threads, int) or isinstance(cfg.threads, bool)
                                    or cfg.threads < 1):
        raise UserError(f"threads={cfg.threads!r} must be a positive integer or null")
    limit = cfg.train_limit
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 2):
        raise UserError(f"train_limit={limit!r} must be an integer >= 2 or null")
    if not isinstance(cfg.scale, bool):
        raise UserError(f"scale={cfg.scale!r} must be true or false")


def report(cfg, features, data, search, converged, seconds, probs, labels, out: Path) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from cnnexp.features.probe import cv_table
    from cnnexp.inference.scoring import Scores, confusion_matrix, per_class, summary

    names = features.label_names
    probs_t, labels_t = torch.from_numpy(probs), torch.from_numpy(labels.astype(np.int64))
    loss = F.nll_loss(probs_t.clamp_min(1e-15).log(), labels_t).item()
    scores = summary(Scores(probs_t, loss), labels_t)
    predicted = probs_t.argmax(1)
    matrix = confusion_matrix(labels_t, predicted, len(names))
    result = {"features": str(features.path), "model": features.attrs.get("model"),
              "layer": features.attrs.get("layer_description"), "dim": features.dim, "fit": data.description,
              "n_fit": len(data.labels), "cv": cfg.cv, "scale": cfg.scale, "best_C": float(
                  search.best_params_["logisticregression__C"]), "best_cv_accuracy": float(search.best_score_),
              "cv_scores": cv_table(search), "converged": converged, "fit_seconds": round(seconds, 2),
              "split": cfg.split, "n": len(labels), **scores, "per_class": per_class(matrix, names),
              "misclassified": [{"index": i, "true": names[labels[i]], "predicted": names[predicted[i]]}
                                for i in (predicted != labels_t).nonzero().flatten().tolist()]}
    write_files(cfg, features, search, result, matrix, out)
    print_report(result, out)
    return result


def write_files(cfg, features, search, result: dict, matrix, out: Path) -> None:
    from cnnexp.features.probe import probe_arrays, save_probe
    from cnnexp.inference.reports import plot_confusion, write_confusion_csv, write_per_class_csv

    names = features.label_names
    attrs = {**features.attrs, "features_file": str(features.path), "best_C": result["best_C"],
             "scale": cfg.scale}
    save_probe(probe_arrays(search, len(names)), attrs, out / "probe.h5")
    write_json_atomic(result, out / "probe.json")
    write_per_class_csv(result["per_class"], out / "per_class.csv")
    write_confusion_csv(matrix, names, out / "confusion_matrix.csv")
    title = f"probe on {features.attrs.get('model')} features, {cfg.split}"
    plot_confusion(matrix, names, out / "confusion_matrix.png", title)
    plot_cv(result["cv_scores"], result["best_C"], out / "cv_scores.png", f"{Path(result['features']).name}: "
            f"CV accuracy against C ({result['fit']})")


def plot_cv(rows: list[dict], best_c: float, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    from cnnexp.inference.reports import save_figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    cs = [r["C"] for r in rows]
    ax.errorbar(cs, [100 * r["mean"] for r in rows], yerr=[100 * r["std"] for r in rows], marker="o", capsize=3)
    ax.axvline(best_c, color="grey", linestyle="--", linewidth=1, label=f"best C = {best_c:g}")
    ax.set(xscale="log", xlabel="C (inverse L2 strength)", ylabel="CV accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def print_report(result: dict, out: Path) -> None:
    from cnnexp.inference.reports import console, per_class_table, results_table

    screen = console()
    screen.print(f"[bold]cnnexp probe[/]  {result['features']}: {result['model']}, {result['layer']}, "
                 f"{result['dim']} features")
    screen.print(f"fit on {result['fit']}; {len(result['cv_scores'])} values of C in {result['fit_seconds']:.1f} s"
                 + ("" if result["converged"] else " (some fits stopped at max_iter; raise max_iter=)"))
    grid = Table(box=None, pad_edge=False)
    for name in ("C", "CV accuracy", "± std", ""):
        grid.add_column(name, justify="right" if name else "left")
    for row in result["cv_scores"]:
        grid.add_row(f"{row['C']:g}", f"{100 * row['mean']:.2f} %", f"{100 * row['std']:.2f}",
                     "best" if row["C"] == result["best_C"] else "")
    screen.print(grid)
    screen.print(f"refit with C={result['best_C']:g}; {result['split']} split, {result['n']} images:")
    screen.print(results_table({k: result[k] for k in ("error", "accuracy", "rank1", "rank5", "loss")}, None, "",
                               plain_label="probe"))
    screen.print(per_class_table(result["per_class"], "per class"))
    screen.print(f"wrote probe.json, probe.h5, per_class.csv, confusion_matrix.csv, confusion_matrix.png, "
                 f"cv_scores.png to {out}")
