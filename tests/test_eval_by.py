"""cnnexp eval on ordered classes (exact and one-off accuracy) and by=<field> (every number per subgroup of
the images, the gap between the best and the worst): the metric functions on hand-made tensors with known
answers, and the command end to end on a test-only dataset source whose images carry fields."""

import csv
import io
import shutil

import pytest
import torch
from conftest import SHARED, read_json
from omegaconf import OmegaConf
from rich.console import Console

from cnnexp.cli import main
from cnnexp.data import DATASETS, create_dataset, register_dataset
from cnnexp.data.image_data import ImageData
from cnnexp.data.sources.olivetti import embedded_gif, read_faces, split_per_person
from cnnexp.inference.reports import gap_line, subgroup_table
from cnnexp.inference.scoring import (Scores, gap, group_numbers, one_off, require_field, subgroups, summary,
                                      value_order)
from cnnexp.models import create_model, model_kwargs
from cnnexp.utils.errors import UserError

AGES = ["(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)"]  # ordered classes: people 0-9, 10-19, 20-29, 30-39


# ---------------------------------------------------------------- the metric functions, known answers

def test_one_off_counts_the_true_class_and_its_neighbours():
    labels = torch.tensor([0, 0, 3, 3, 5, 7, 2, 4])
    predicted = torch.tensor([0, 1, 2, 4, 7, 0, 2, 6])
    # exact: #0 #6; one class away: #1 #2 #3; two or more: #4 #5 #7
    assert one_off(predicted, labels) == pytest.approx(5 / 8)
    assert one_off(labels, labels) == 1.0


def test_summary_adds_one_off_only_for_ordered_classes():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([0, 2, 2, 2])  # guesses 0, 1, 0, 2: exact 2 of 4, one-off 3 of 4
    plain = summary(Scores(probs, 0.9), labels)
    assert "one_off" not in plain and plain["accuracy"] == pytest.approx(0.5)
    ordered = summary(Scores(probs, 0.9), labels, ordered=True)
    assert ordered["one_off"] == pytest.approx(0.75)
    assert {k: v for k, v in ordered.items() if k != "one_off"} == plain
    assert list(ordered)[:3] == ["error", "accuracy", "one_off"]


def test_subgroups_on_hand_made_predictions():
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 0])
    predicted = torch.tensor([0, 1, 0, 2, 0, 3, 2, 3, 3, 0])
    top_p = torch.tensor([0.9, 0.8, 0.4, 0.5, 0.7, 0.3, 0.6, 0.9, 0.8, 0.5])
    race = ["White", "Black", "Black", "Asian", "White", "Black", "Asian", "White", "White", "Asian"]
    rows = subgroups(labels, predicted, top_p, race, ordered=True)
    assert [r["value"] for r in rows] == ["Asian", "Black", "White"]
    asian, black, white = rows
    # Asian: #3 (3 -> 2, one off), #6 (right), #9 (right)
    assert asian == {"value": "Asian", "n": 3, "correct": 2, "accuracy": pytest.approx(2 / 3),
                     "error": pytest.approx(1 / 3), "one_off": 1.0, "mean_prob": pytest.approx(1.6 / 3),
                     "uncertain": True}
    # Black: #1 right, #2 (2 -> 0) and #5 (1 -> 3) two away
    assert (black["n"], black["correct"], black["one_off"]) == (3, 1, pytest.approx(1 / 3))
    assert black["mean_prob"] == pytest.approx(0.5)
    assert (white["n"], white["accuracy"], white["one_off"]) == (4, 1.0, 1.0)

    spread = gap(rows)
    assert (spread["best"], spread["worst"]) == ("White", "Black")
    assert spread["points"] == pytest.approx(100 * (1 - 1 / 3))
    assert (spread["best_n"], spread["worst_n"], spread["metric"]) == (4, 3, "accuracy")
    assert spread["left_out"] == [] and spread["uncertain"] is True  # every group is under 30 images

    unordered = subgroups(labels, predicted, top_p, race)
    assert "one_off" not in unordered[0] and unordered[0]["accuracy"] == asian["accuracy"]


def test_subgroup_size_marks_uncertain_groups():
    labels = torch.zeros(40, dtype=torch.long)
    rows = subgroups(labels, labels, torch.ones(40), ["big"] * 30 + ["small"] * 10)
    assert [(r["value"], r["n"], r["uncertain"]) for r in rows] == [("big", 30, False), ("small", 10, True)]
    assert gap(rows)["points"] == 0 and gap(rows)["best"] == "big"  # a tie goes to the larger group
    assert gap(rows[:1]) is None


def test_gap_leaves_out_small_groups_when_two_others_remain():
    labels = torch.zeros(75, dtype=torch.long)
    predicted = torch.cat([torch.zeros(30 + 24 + 3), torch.ones(6 + 12)]).long()  # a 30/30, b 24/30, c 3/15
    values = ["a"] * 30 + ["b"] * 24 + ["c"] * 3 + ["b"] * 6 + ["c"] * 12
    spread = gap(subgroups(labels, predicted, torch.ones(75), values))
    assert (spread["best"], spread["worst"], spread["left_out"], spread["uncertain"]) == ("a", "b", ["c"], False)
    assert spread["points"] == pytest.approx(20.0)


def test_subgroup_table_and_gap_line_as_printed():
    labels = torch.tensor([0] * 40 + [1] * 5)
    predicted = torch.tensor([0] * 30 + [2] * 10 + [1] * 4 + [3])  # big: 30 of 40 right; few: 4 of 5
    rows = subgroups(labels, predicted, torch.full((45,), 0.5), ["big"] * 40 + ["few"] * 5, ordered=True)
    screen = Console(width=200, record=True, file=io.StringIO())
    screen.print(subgroup_table(rows, "race", "by race (centre view)", 30))
    screen.print(gap_line(gap(rows), "race", 30))
    lines = [line.rstrip() for line in screen.export_text().splitlines()]
    assert lines[0].strip() == "by race (centre view)"
    assert lines[1].split() == ["race", "images", "accuracy", "error", "one-off", "mean", "top-1", "prob"]
    assert lines[2].split() == ["big", "40", "75.00", "%", "25.00", "%", "75.00", "%", "0.500"]
    assert lines[3].split() == ["few", "5", "*", "80.00", "%", "20.00", "%", "80.00", "%", "0.500"]
    assert lines[4] == "* fewer than 30 images: uncertain"
    assert lines[5] == ("gap: 5.00 points of accuracy between the best race, few (80.00 %, 5 images), and the worst, "
                        "big (75.00 %, 40 images); uncertain: groups under 30 images compared")
    assert gap_line(None, "race", 30) == "gap: one race in this split, nothing to compare"


def test_values_in_class_order_or_natural_order():
    ages = ["(60, 100)", "(4, 6)", "(15, 20)", "(0, 2)", "(4, 6)"]
    assert value_order(ages) == ["(0, 2)", "(4, 6)", "(15, 20)", "(60, 100)"]  # numbers compare as numbers
    assert value_order(["M", "F", "M"], class_names=["M", "F"]) == ["M", "F"]  # the target's own field
    assert value_order(["b", "A", "c"], class_names=["x"]) == ["A", "b", "c"]


def test_require_field_names_the_fields_there_are():
    fields = {"race": ["White"], "gender": ["F"]}
    assert require_field(fields, "race") == ["White"]
    unknown = r"^by=ethnicity: the dataset has no field 'ethnicity'; use one of: gender, race$"
    with pytest.raises(UserError, match=unknown):
        require_field(fields, "ethnicity")
    with pytest.raises(UserError, match="^by=race: this dataset has no fields"):
        require_field({}, "race")


# ---------------------------------------------------------------- the command, on a source with fields

def agebins(cfg, seed: int = 0) -> ImageData:
    """Test-only source: Olivetti's faces, the 40 people in 4 ordered "age groups" of 10, each face with the
    fields age (the class), gender (by the person's parity) and race (person 0 alone is "Other": 8 train
    faces, a group too small to trust). `+dataset.fields=false` leaves the fields out."""
    splits = split_per_person(read_faces(embedded_gif()), list(cfg.per_person))
    for split in splits.values():
        people = split.labels.tolist()
        split.labels = split.labels // 10
        if cfg.get("fields", True):
            split.fields = {"age": [AGES[p // 10] for p in people], "gender": ["FM"[p % 2] for p in people],
                            "race": ["Other" if p == 0 else ("White", "Black")[p % 2] for p in people]}
    return ImageData(splits, AGES, meta={"ordered": True})


@pytest.fixture(scope="module", autouse=True)
def agebins_source():
    DATASETS.names()  # the built-in sources first
    register_dataset(agebins)
    yield
    del DATASETS._factories["agebins"]


@pytest.fixture(scope="module")
def age_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "ages"
    assert main(["train", "dataset=olivetti", "dataset.name=agebins", "augmentation=patch", "model.nkerns=[4,8]",
                 "model.hidden=32", "trainer.epochs=3", "optimizer.lr=0.1", "trainer.batch_size=20",
                 f"hydra.run.dir={run}"]) == 0
    return run


@torch.no_grad()
def centre_guesses(run, split_index: slice):
    """The best checkpoint's centre-view probabilities and the labels, computed directly."""
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    model = create_model("lenet", ckpt["input_shape"], 4, **model_kwargs(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    faces = torch.from_numpy(read_faces(embedded_gif())).float().div(255).view(40, 10, 1, 57, 47)
    x = faces[:, split_index].reshape(-1, 1, 57, 47)
    people = torch.arange(40).repeat_interleave(x.shape[0] // 40)
    return model.eval()(x[..., 2:54, 2:44]).softmax(1), people


def test_ordered_classes_report_exact_and_one_off(cnnexp, age_run):
    result = cnnexp("eval", f"run={age_run}", "split=train", "--tencrop")
    assert result.code == 0, result.err
    out = age_run / "eval" / "train-tencrop"
    report = read_json(out / "eval.json")
    probs, people = centre_guesses(age_run, slice(0, 8))
    labels, predicted = people // 10, probs.argmax(1)
    assert report["ordered"] is True and report["n"] == 320
    assert report["accuracy"] == pytest.approx((predicted == labels).double().mean().item(), abs=1e-9)
    assert report["one_off"] == pytest.approx(((predicted - labels).abs() <= 1).double().mean().item(), abs=1e-9)
    assert 0 <= report["tencrop_one_off"] <= 1 and report["tencrop_one_off"] >= report["tencrop_accuracy"]
    assert "by" not in report and not list(out.glob("by_*.csv"))

    lines = result.out.splitlines()
    row = next(line for line in lines if line.startswith("one-off"))
    assert row.split()[1:3] == [f"{100 * report['one_off']:.2f}", "%"]
    assert f"{100 * report['tencrop_one_off']:.2f} %" in row
    assert any(line.startswith("accuracy (exact)") for line in lines)


def test_by_field_table_csv_and_json(cnnexp, age_run):
    result = cnnexp("eval", f"run={age_run}", "split=train", "by=race")
    assert result.code == 0, result.err
    out = age_run / "eval" / "train"
    report = read_json(out / "eval.json")
    probs, people = centre_guesses(age_run, slice(0, 8))
    labels, predicted = people // 10, probs.argmax(1)
    race = ["Other" if p == 0 else ("White", "Black")[p % 2] for p in people.tolist()]

    groups = report["by"]["race"]["groups"]
    assert [(g["value"], g["n"], g["uncertain"]) for g in groups] == [
        ("Black", 160, False), ("Other", 8, True), ("White", 152, False)]
    for g in groups:
        mask = torch.tensor([r == g["value"] for r in race])
        assert g["correct"] == (predicted[mask] == labels[mask]).sum().item()
        assert g["one_off"] == pytest.approx(((predicted[mask] - labels[mask]).abs() <= 1).double().mean().item())
        assert g["mean_prob"] == pytest.approx(probs[mask].max(1).values.mean().item(), rel=1e-4)
    assert sum(g["correct"] for g in groups) == round(report["accuracy"] * 320)
    spread = report["by"]["race"]["gap"]
    steady = [g for g in groups if g["value"] != "Other"]  # 8 faces of person 0: left out of the gap
    best = max(steady, key=lambda g: (g["accuracy"], g["n"]))
    worst = min(steady, key=lambda g: (g["accuracy"], -g["n"]))
    assert (spread["best"], spread["worst"], spread["left_out"]) == (best["value"], worst["value"], ["Other"])
    assert spread["points"] == pytest.approx(100 * (best["accuracy"] - worst["accuracy"]))

    with open(out / "by_race.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["race", "n", "correct", "accuracy", "error", "one_off", "mean_prob", "uncertain"]
    assert [(r["race"], int(r["n"]), float(r["accuracy"])) for r in rows] == [
        (g["value"], g["n"], pytest.approx(g["accuracy"])) for g in groups]

    lines = result.out.splitlines()
    title = lines.index(next(line for line in lines if line.strip() == "by race (centre view)"))
    assert lines[title + 1].split() == ["race", "images", "accuracy", "error", "one-off", "mean", "top-1", "prob"]
    other = lines[title + 3].split()
    assert other[:3] == ["Other", "8", "*"] and other[3] == f"{100 * groups[1]['accuracy']:.2f}"
    assert any("fewer than 30 images: uncertain" in line for line in lines)
    last = folded(lines, "gap: ")
    assert f"{spread['points']:.2f} points of accuracy" in last
    assert f"best race, {spread['best']} (" in last and f"the worst, {spread['worst']} (" in last
    assert last.endswith("; leaving out Other (under 30 images)")
    assert "by_race.csv" in folded(lines, "wrote ")


def folded(lines: list[str], start: str) -> str:
    """The line starting with `start`, with the lines it was folded into (80 columns) joined back."""
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    rest = [line.strip() for line in lines[first + 1:]]
    more = next((i for i, line in enumerate(lines[first + 1:]) if not line.startswith("    ")), len(rest))
    return " ".join([lines[first], *rest[:more]])


def test_by_the_targets_own_field_is_per_class(cnnexp, age_run):
    result = cnnexp("eval", f"run={age_run}", "split=val", "by=age")
    assert result.code == 0, result.err
    report = read_json(age_run / "eval" / "val" / "eval.json")
    groups = report["by"]["age"]["groups"]
    assert [g["value"] for g in groups] == AGES  # class order
    assert [g["accuracy"] for g in groups] == pytest.approx([c["recall"] for c in report["per_class"]])
    assert [g["n"] for g in groups] == [c["support"] for c in report["per_class"]] == [10] * 4


@pytest.mark.parametrize("args, message", [
    (("by=ethnicity",), "error: by=ethnicity: the dataset has no field 'ethnicity'; use one of: age, gender, race"),
    (("by=race", "+dataset.fields=false"),
     "error: by=race: this dataset has no fields to break the results down by (only its classes); remove by="),
])
def test_unknown_field_is_one_line_and_writes_nothing(cnnexp, age_run, args, message):
    result = cnnexp("eval", f"run={age_run}", "split=test", *args)
    assert result.code == 2 and result.err.startswith(message), result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (age_run / "eval" / "test").exists()


# ---------------------------------------------------------------- real faces: dataset=utkface

UTKFACE = SHARED / "utkface"
RACES = ("White", "Black", "Asian", "Indian", "Others")


@pytest.mark.skipif(not UTKFACE.is_dir(), reason=f"the UTKFace faces are not at {UTKFACE}")
def test_utkface_age_run_by_race_and_gender(cnnexp, workdir):
    """A tiny age-group network on 400 real faces (every 19th file, all ages): exact and one-off accuracy,
    and the subgroups checked against each face's own race and gender read back from the dataset."""
    (workdir / "faces").mkdir()
    for path in sorted(UTKFACE.iterdir())[::19][:400]:
        shutil.copy(path, workdir / "faces" / path.name)
    assert cnnexp("train", "dataset=utkface", "dataset.root=faces", "dataset.target=age", "dataset.size=32",
                  "model.nkerns=[4,8]", "model.hidden=32", "trainer.epochs=2", "trainer.batch_size=20",
                  "hydra.run.dir=run").code == 0
    dataset_cfg = OmegaConf.load(workdir / "run" / "config.yaml").dataset
    dataset_cfg.root = str(workdir / "faces")  # outside a command, a relative root would read Hydra's last job's folder
    split = create_dataset(dataset_cfg, seed=0).split("test")

    for field in ("race", "gender"):
        result = cnnexp("eval", "run=run", f"by={field}")
        assert result.code == 0, result.err
        report = read_json(workdir / "run" / "eval" / "test" / "eval.json")
        assert report["ordered"] is True and report["n"] == len(split)
        assert report["accuracy"] <= report["one_off"] <= 1
        names = [c["class"] for c in report["per_class"]]
        assert names == ["(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)"]
        wrong = {m["index"]: (names.index(m["true"]), names.index(m["predicted"])) for m in report["misclassified"]}
        far = sum(abs(t - p) > 1 for t, p in wrong.values())
        assert report["one_off"] == pytest.approx(1 - far / len(split))

        groups = report["by"][field]["groups"]
        values = split.fields[field]
        assert {g["value"] for g in groups} == set(values) <= (set(RACES) if field == "race" else {"F", "M"})
        for g in groups:
            members = [i for i, v in enumerate(values) if v == g["value"]]
            assert g["n"] == len(members) and g["uncertain"] == (len(members) < 30)
            assert g["correct"] == sum(i not in wrong for i in members)
            assert g["one_off"] == pytest.approx(sum(i not in wrong or abs(wrong[i][0] - wrong[i][1]) <= 1
                                                     for i in members) / len(members))
        with open(workdir / "run" / "eval" / "test" / f"by_{field}.csv") as f:
            assert [row[field] for row in csv.DictReader(f)] == [g["value"] for g in groups]
        assert f"by {field} (centre view)" in result.out and "gap: " in result.out
