"""`cnnexp predict`: a trained run's best guesses for image files, printed as the age/gender
tutorial does (`Guess @1 <label>, prob = 0.93`), as a table for many images or as JSON lines; and
`image=olivetti`, the Olivetti tutorial's last step: all 400 faces, listing the misclassified ones."""

from __future__ import annotations

import json
import sys
from functools import partial
from typing import TYPE_CHECKING

from rich.table import Table

from cnnexp.runner.app import app_main
from cnnexp.utils.errors import UserError

if TYPE_CHECKING:  # torch and the inference layer are imported where used: `--help` and `--cfg job` go without
    from cnnexp.engine.assemble import Restored

CONFIG_NAME = "predict"
HELP = "a run's best guesses for images (topk=, --json) or image=olivetti"
FLAGS = {"--json": "json=true", "--tencrop": "tencrop=true"}
READ_ONLY = True  # composed once, run without a Hydra job (see runner/app.py)
main = app_main("predict", __name__)  # cnnexp predict ... -> this module's app


def run(cfg, overrides: list[str]) -> None:
    """`overrides` (a read-only command's command line) go unused: predict reads image files, not data."""
    from cnnexp.inference.open_run import open_run
    from cnnexp.inference.scoring import require_crops
    from cnnexp.utils.runs import named_runs

    runs = named_runs(cfg.run)
    if runs is not None:
        predict_files(cfg, *several_runs(cfg, runs))
        return
    restored = open_run(cfg.run, cfg.checkpoint, cfg.which, cfg.device, resize=cfg.resize, probe=True)
    if cfg.tencrop:
        require_crops(restored.pipeline, restored.image_shape)
    if cfg.image == "olivetti":
        predict_olivetti(cfg, restored)
    else:
        predict_files(cfg, partial(read_file, cfg, restored), partial(classify_chunk, cfg, restored),
                      partial(show_rows, cfg))


# ---- image files ---------------------------------------------------------------------------------
def predict_files(cfg, read, classify, show) -> None:
    """Decode and classify BATCH files at a time (`read(path)`, `classify(chunk)` -> rows, `show(rows,
    one_file)` when not --json); in a folder or glob, undecodable files are skipped (each named on stderr, counted
    at the end); a single file that cannot be decoded is an error."""
    from cnnexp.inference.guesses import BATCH
    from cnnexp.inference.inputs import image_files

    files = image_files(cfg.image)
    rows, skipped = [], []
    for start in range(0, len(files), BATCH):
        chunk = read_chunk(files[start : start + BATCH], read, strict=len(files) == 1, skipped=skipped)
        for row in classify(chunk):
            rows.append(row)
            if cfg.json:
                print(json.dumps(row), flush=True)
    if skipped:
        sys.stderr.write(f"skipped {len(skipped)} of {len(files)} files that could not be decoded\n")
    if not rows:
        raise UserError(f"none of the {len(files)} files in image={cfg.image} could be decoded as an image")
    if not cfg.json:
        show(rows, len(files) == 1)


def read_chunk(paths: list, read, strict: bool, skipped: list) -> list[tuple]:
    """(path, *read(path)) per readable file."""
    from cnnexp.inference.inputs import UnreadableImage

    chunk = []
    for path in paths:
        try:
            chunk.append((path, *read(path)))
        except UnreadableImage as exc:
            if strict:
                raise
            skipped.append(path)
            sys.stderr.write(f"skipped: {exc}\n")
    return chunk


def read_file(cfg, restored: Restored, path) -> tuple:
    """(uint8 C x H x W tensor or None when no face was found, face box or None)."""
    from cnnexp.inference.inputs import load

    return load(path, restored.image_shape, restored.resize, cfg.detect_face, cfg.face_margin, cfg.max_pixels)


def classify_chunk(cfg, restored: Restored, chunk: list) -> list[dict]:
    """One result per file: {"image", "face", "top"} ("top" is None when no face was found)."""
    import torch

    from cnnexp.inference.guesses import class_probs, top_guesses

    found = [i for i, (_, tensor, _) in enumerate(chunk) if tensor is not None]
    guesses = {}
    if found:
        probs = class_probs(restored, torch.stack([chunk[i][1] for i in found]), cfg.tencrop, cfg.tencrop_mirror)
        guesses = dict(zip(found, top_guesses(probs, restored.class_names, cfg.topk)))
    rows = []
    for i, (path, _, box) in enumerate(chunk):
        row = {"image": str(path), "top": guesses.get(i)}
        if cfg.detect_face:
            row["face"] = list(box) if box is not None else None
        rows.append(row)
    return rows


def show_rows(cfg, rows: list[dict], one_file: bool) -> None:
    if one_file:
        print_single(rows[0], cfg.detect_face)
    else:
        print_table(rows, cfg)


def print_single(row: dict, detect_face: bool) -> None:
    face = ""
    if detect_face and row["face"] is not None:
        x, y, w, h = row["face"]
        face = f"  (face at x={x} y={y} w={w} h={h})"
    print(f"{row['image']}{face}")
    if row["top"] is None:
        print("no face found")
        return
    for rank, guess in enumerate(row["top"], 1):
        print(f"Guess @{rank} {guess['label']}, prob = {guess['prob']:.2f}")


def print_table(rows: list[dict], cfg) -> None:
    from cnnexp.inference.reports import console

    table = Table(box=None, pad_edge=False)
    table.add_column("image", overflow="fold")
    if cfg.detect_face:
        table.add_column("face (x y w h)")
    k = max((len(r["top"]) for r in rows if r["top"]), default=cfg.topk)
    for rank in range(1, k + 1):
        table.add_column(f"guess @{rank}")
        table.add_column("prob", justify="right")
    for row in rows:
        cells = [row["image"]]
        if cfg.detect_face:
            cells.append(" ".join(map(str, row["face"])) if row["face"] else "no face found")
        for guess in row["top"] or []:
            cells += [guess["label"], f"{guess['prob']:.2f}"]
        table.add_row(*cells)
    console().print(table)


# ---- named runs: run={age:<run>,gender:<run>} ----------------------------------------------------
def several_runs(cfg, runs: dict[str, str]) -> tuple:
    """(read, classify, show) for named runs, every run opened first (a wrong one is one line naming its
    key, before any image is read); each photo is decoded once and its face found once."""
    opened = open_runs(cfg, runs)
    return partial(read_photo, cfg, opened), partial(classify_photos, cfg, opened), partial(print_runs_table, cfg)


def open_runs(cfg, runs: dict[str, str]) -> dict:
    from cnnexp.inference.open_run import open_run
    from cnnexp.inference.scoring import require_crops
    from cnnexp.utils.runs import about_run

    opened = {}
    for name, folder in runs.items():
        with about_run(name):
            opened[name] = open_run(folder, None, cfg.which, cfg.device, resize=cfg.resize, probe=True)
            if cfg.tencrop:
                require_crops(opened[name].pipeline, opened[name].image_shape)
    return opened


def read_photo(cfg, opened: dict, path) -> tuple:
    """(face box or None, {name: input} or None when no face was found)."""
    from cnnexp.inference.inputs import decode
    from cnnexp.inference.several import decode_channels, photo_inputs

    image = decode(path, decode_channels(opened), cfg.max_pixels)
    return photo_inputs(image, opened, cfg.detect_face, cfg.face_margin)


def classify_photos(cfg, opened: dict, chunk: list) -> list[dict]:
    """One answer per photo (`photo_answer`): each run scores its inputs of the chunk in one pass."""
    import torch

    from cnnexp.inference.guesses import class_probs, top_guesses
    from cnnexp.inference.several import photo_answer

    found = [i for i, (_, _, inputs) in enumerate(chunk) if inputs is not None]
    guesses = {i: {} for i in found}
    for name, restored in opened.items():
        if found:
            images = torch.stack([chunk[i][2][name] for i in found])
            probs = class_probs(restored, images, cfg.tencrop, cfg.tencrop_mirror)
            for i, top in zip(found, top_guesses(probs, restored.class_names, cfg.topk)):
                guesses[i][name] = {"top": top}
    return [photo_answer(str(path), box, cfg.detect_face, guesses.get(i)) for i, (path, box, _) in enumerate(chunk)]


def print_runs_table(cfg, rows: list[dict], one_file: bool) -> None:
    """image, face box (with detect_face), then each run's guesses as `label prob` by rank."""
    from cnnexp.inference.reports import console
    from cnnexp.utils.runs import named_runs

    names = list(named_runs(cfg.run))
    table = Table(box=None, pad_edge=False)
    table.add_column("image", overflow="fold")
    if cfg.detect_face:
        table.add_column("face (x y w h)")
    for name in names:
        table.add_column(name)
    for row in rows:
        cells = [row["image"]]
        if cfg.detect_face:
            cells.append(" ".join(map(str, row["face"])) if row["face"] else row["reason"])
        cells += [", ".join(f"{g['label']} {g['prob']:.2f}" for g in row[name]["top"]) if name in row else ""
                  for name in names]
        table.add_row(*cells)
    console().print(table)


# ---- image=olivetti ------------------------------------------------------------------------------
def predict_olivetti(cfg, restored: Restored) -> None:
    """All 400 embedded faces; the true person of face i is i // 10."""
    import torch

    from cnnexp.data.sources.olivetti import FACES_PER_PERSON, embedded_gif, person_names, read_faces
    from cnnexp.inference.guesses import class_probs, top_guesses

    people = person_names()
    if restored.class_names != people or restored.image_shape != (1, 57, 47):
        raise UserError(f"image=olivetti needs a run trained on dataset=olivetti (40 people, 1x57x47 faces); this "
                        f"run has {len(restored.class_names)} classes of {'x'.join(map(str, restored.image_shape))}")
    if cfg.detect_face:
        raise UserError("detect_face applies to image files; the Olivetti faces are already cropped")
    faces = torch.from_numpy(read_faces(embedded_gif())).unsqueeze(1)
    labels = torch.arange(len(faces)) // FACES_PER_PERSON
    probs = class_probs(restored, faces, cfg.tencrop, cfg.tencrop_mirror)
    guesses = top_guesses(probs, restored.class_names, cfg.topk)
    splits = olivetti_splits(restored.config)
    rows = [{"index": i, "true": people[label], "split": splits[i % FACES_PER_PERSON],
             "correct": guesses[i][0]["label"] == people[label], "top": guesses[i]}
            for i, label in enumerate(labels.tolist())]
    if cfg.json:
        for row in rows:
            print(json.dumps(row))
        return
    print_olivetti(rows)


def olivetti_splits(config) -> list[str]:
    """Which split each of a person's ten faces was in when the run trained (dataset.per_person)."""
    per_person = list(config.dataset.get("per_person") or (8, 1, 1))
    return [name for name, count in zip(("train", "val", "test"), per_person) for _ in range(count)]


def print_olivetti(rows: list[dict]) -> None:
    from cnnexp.inference.reports import console

    screen = console()
    wrong = [r for r in rows if not r["correct"]]
    by_split = ", ".join(f"{split} {sum(1 for r in wrong if r['split'] == split)} of "
                         f"{sum(1 for r in rows if r['split'] == split)}" for split in ("train", "val", "test"))
    screen.print(f"olivetti (embedded GIF): {len(rows)} faces, {len(rows) - len(wrong)} correct "
                  f"({100 * (len(rows) - len(wrong)) / len(rows):.2f} %); misclassified {len(wrong)} ({by_split})")
    if not wrong:
        return
    table = Table(box=None, pad_edge=False)
    for name in ("face", "person", "split", *[f"guess @{k + 1}" for k in range(len(wrong[0]["top"]))]):
        table.add_column(name, justify="right" if name == "face" else "left")
    for row in wrong:
        table.add_row(str(row["index"]), row["true"], row["split"],
                      *[f"{g['label']} ({g['prob']:.2f})" for g in row["top"]])
    screen.print(table)
