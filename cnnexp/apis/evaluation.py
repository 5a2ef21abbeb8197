"""Scoring a trained run on a split, plain and ten-crop, and writing the report: eval.json, per-class
precision/recall/F1, a confusion matrix and the misclassified images; for ordered classes (age groups)
one-off accuracy too; with by=<field> every number per subgroup of the images (by_<field>.csv).
`cnnexp eval` and `Predictor.evaluate` both run `evaluate_run`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnexp.utils.files import display_path, short_names, write_json_atomic
from cnnexp.utils.text import fold

if TYPE_CHECKING:  # torch and the inference layer are imported where used: `--help` and `--cfg job` go without
    from cnnexp.engine.assemble import Restored

LISTED = 10  # misclassified images named on the console


def evaluate_run(cfg, out: Path, dataset_overrides: dict | None = None, restored: Restored | None = None) -> dict:
    """The eval config `cfg`'s report, written to `out` and printed; `restored`: the run already opened
    (else opened from cfg.run/checkpoint/which with `dataset_overrides`, e.g. {"root": "../data"})."""
    from cnnexp.engine.evaluation import eval_batch_size
    from cnnexp.inference.open_run import open_run
    from cnnexp.inference.scoring import plain_scores, require_crops, require_field, tencrop_scores

    if restored is None:
        restored = open_run(cfg.run, cfg.checkpoint, cfg.which, cfg.device, dataset_overrides)
    if cfg.eval.tencrop:
        require_crops(restored.pipeline, restored.image_shape)
    data = restored.load_data()
    split = data.split(cfg.split).to(restored.device)
    if cfg.by is not None:
        require_field(split.fields, cfg.by)
    ordered = bool(data.meta.get("ordered"))
    run_trainer = restored.config.trainer
    batch_size = eval_batch_size(cfg.trainer.batch_size or run_trainer.eval_batch_size, float(run_trainer.eval_memory_mb),
                                 restored.model, restored.image_shape, restored.pipeline.augmentation.out_shape)
    tencrop = None
    with restored.precision.autocast():
        plain = plain_scores(restored.model, split.images, split.labels, restored.pipeline, batch_size)
        if cfg.eval.tencrop:
            tencrop = tencrop_scores(restored.model, split.images, split.labels, restored.pipeline, batch_size,
                                     cfg.eval.tencrop_reduce, cfg.eval.tencrop_mirror)
    return report(cfg, restored, split, plain, tencrop, out, ordered)


def report_folder(cfg) -> Path:
    """Where an eval config's report goes: <run>/eval/<split>[-tencrop|-fivecrop[-vote]][-<checkpoint>]."""
    from cnnexp.utils.jobdirs import eval_dir

    return Path(eval_dir(cfg.run, cfg.checkpoint, cfg.which, cfg.split, cfg.eval.tencrop, cfg.eval.tencrop_reduce,
                         cfg.eval.tencrop_mirror))


def report(cfg, restored: Restored, split, plain, tencrop, out: Path, ordered: bool = False) -> dict:
    """Print and write everything; the per-class report, the subgroups and pictures use the ten-crop
    predictions when there are any (the better-informed answer), else the centre view's."""
    from cnnexp.inference.scoring import confusion_matrix, gap, per_class, subgroups

    names, labels = restored.class_names, split.labels.cpu()
    top_p, predicted = (tencrop or plain).probs.cpu().max(1)
    matrix = confusion_matrix(labels, predicted, len(names))
    wrong = (predicted != labels).nonzero().flatten().tolist()
    result = eval_record(cfg, restored, plain, tencrop, labels, ordered)
    files = {i: str(split.paths[i]) for i in wrong} if split.paths is not None else {}
    result.update(predictions="tencrop" if tencrop is not None else "centre", per_class=per_class(matrix, names),
                  misclassified=[{"index": i, **({"file": files[i]} if files else {}), "true": names[labels[i]],
                                  "predicted": names[predicted[i]], "prob": round(top_p[i].item(), 4)} for i in wrong])
    if cfg.by is not None:
        rows = subgroups(labels, predicted, top_p, split.fields[cfg.by], ordered, names)
        result["by"] = {cfg.by: {"groups": rows, "gap": gap(rows)}}
    write_files(cfg, restored, result, matrix, split.images, out)
    print_report(cfg, restored, result, out)
    return result


def write_files(cfg, restored: Restored, result: dict, matrix, images, out: Path) -> None:
    from cnnexp.inference.reports import (plot_confusion, plot_image_grid, write_confusion_csv,
                                          write_per_class_csv, write_subgroup_csv)

    names = restored.class_names
    title = f"{restored.config.model.name} on {restored.config.dataset.name} {cfg.split}" + (
        f", {views_label(cfg)}" if result["tencrop"] else "")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / "eval.json")
    write_per_class_csv(result["per_class"], out / "per_class.csv")
    write_confusion_csv(matrix, names, out / "confusion_matrix.csv")
    for field, breakdown in result.get("by", {}).items():
        write_subgroup_csv(breakdown["groups"], field, out / f"by_{field}.csv")
    ordered = result.get("ordered", False)
    matrix_title = title
    if ordered:  # the numbers of the predictions the matrix counts
        prefix = "tencrop_" if result["tencrop"] else ""
        matrix_title += (f"\nexact {percent(result[prefix + 'accuracy'])}, "
                         f"one-off {percent(result[prefix + 'one_off'])} (outlined)")
    plot_confusion(matrix, names, out / "confusion_matrix.png", matrix_title, one_off_band=ordered)
    wrong = result["misclassified"]
    shown = wrong[: cfg.eval.max_images]
    grid_title = f"{title}: {len(wrong)} of {result['n']} misclassified" + (
        f" (first {len(shown)} shown)" if len(shown) < len(wrong) else "")
    pictures = images[[m["index"] for m in shown]] if shown else None
    captions = [(f"{Path(m['file']).name}\n" if "file" in m else "") + guess_text(m) for m in shown]
    plot_image_grid(pictures, captions, out / "misclassified.png", grid_title)


def eval_record(cfg, restored: Restored, plain, tencrop, labels, ordered: bool = False) -> dict:
    from cnnexp.inference.scoring import summary

    record = {"split": cfg.split, "n": len(labels), **({"ordered": True} if ordered else {}),
              **summary(plain, labels, ordered),
              "run": cfg.run, "checkpoint": str(restored.checkpoint_path),
              "epoch": restored.epoch, "step": restored.step, "tencrop": tencrop is not None,
              "precision": restored.precision.name}
    if tencrop is not None:
        record.update(tencrop_reduce=cfg.eval.tencrop_reduce, tencrop_views=10 if cfg.eval.tencrop_mirror else 5)
        record.update({f"tencrop_{k}": v for k, v in summary(tencrop, labels, ordered).items()})
    return record


def print_report(cfg, restored: Restored, result: dict, out: Path) -> None:
    from cnnexp.inference.reports import console, gap_line, per_class_table, results_table, subgroup_table
    from cnnexp.inference.scoring import UNCERTAIN_BELOW

    screen = console()
    screen.print(fold(f"cnnexp eval  {display_path(restored.checkpoint_path)} (epoch {restored.epoch}, step "
                      f"{restored.step})  {cfg.split} split, {result['n']} images, precision "
                      f"{restored.precision.describe()}"), markup=False)
    keys = ("error", "accuracy", *(("one_off",) if "one_off" in result else ()), "rank1", "rank5", "loss")
    plain_numbers = {k: result[k] for k in keys}
    tencrop_numbers = {k: result[f"tencrop_{k}"] for k in plain_numbers} if result["tencrop"] else None
    screen.print(results_table(plain_numbers, tencrop_numbers, views_label(cfg)))
    source = views_label(cfg).split()[0] if result["tencrop"] else "centre view"
    screen.print(per_class_table(result["per_class"], f"per class ({source})"))
    for field, breakdown in result.get("by", {}).items():
        screen.print(subgroup_table(breakdown["groups"], field, f"by {field} ({source})", UNCERTAIN_BELOW))
        screen.print(fold(gap_line(breakdown["gap"], field, UNCERTAIN_BELOW)))
    wrong = result["misclassified"]
    screen.print(f"misclassified ({source}): {len(wrong)} of {result['n']}", highlight=False)
    for line in misclassified_lines(wrong):
        screen.print(fold(f"  {line}"), highlight=False)
    by_files = "".join(f"by_{field}.csv, " for field in result.get("by", {}))
    screen.print(fold(f"wrote eval.json, per_class.csv, {by_files}confusion_matrix.csv, confusion_matrix.png, "
                      f"misclassified.png to {display_path(out)}"))


def guess_text(wrong: dict) -> str:
    return f"{wrong['true']} -> {wrong['predicted']} ({wrong['prob']:.2f})"


def misclassified_lines(wrong: list[dict]) -> list[str]:
    """The first LISTED misclassified images, one a line, each named by its file when the data has files
    (relative to the working folder, else to the folder holding them), else by its index in the split."""
    shown = wrong[:LISTED]
    names = (short_names([m["file"] for m in shown]) if shown and "file" in shown[0]
             else [f"#{m['index']}" for m in shown])
    width = max(map(len, names), default=0)
    lines = [f"{name:<{width}}  {guess_text(m)}" for name, m in zip(names, shown)]
    return lines + ([f"... {len(wrong) - LISTED} more in eval.json"] if len(wrong) > LISTED else [])


def views_label(cfg) -> str:
    return f"{'ten' if cfg.eval.tencrop_mirror else 'five'}-crop ({cfg.eval.tencrop_reduce})"


