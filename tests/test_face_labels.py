"""Face datasets labelled in file names (dataset=utkface) and tables (dataset=table): the age groups,
M/F, race names, the shared seeded split, and one clear line for each kind of bad label."""

import shutil
from collections import Counter

import pytest

from cnnexp.data import create_dataset
from cnnexp.data.labels import AGE_GROUPS, make_field, parse_bins, put_in_bin
from cnnexp.schemas.datasets import source_config
from cnnexp.utils.errors import UserError

from conftest import SHARED

UTKFACE = SHARED / "utkface"
needs_utkface = pytest.mark.skipif(not UTKFACE.is_dir(), reason=f"the UTKFace faces are not at {UTKFACE}")


def dataset_cfg(name: str, **keys):
    return source_config(name, **keys)


def real_faces(n: int) -> list:
    """The first n UTKFace files (sorted names: ages 1, 10, 100, ...)."""
    return sorted(UTKFACE.iterdir())[:n]


@pytest.mark.parametrize("age, group", [(0, "(0, 2)"), (3, "(0, 2)"), (4, "(4, 6)"), (7, "(4, 6)"),
                                        (13, "(8, 12)"), (14, "(15, 20)"), (22, "(15, 20)"), (23, "(25, 32)"),
                                        (35, "(25, 32)"), (36, "(38, 43)"), (45, "(38, 43)"), (46, "(48, 53)"),
                                        (56, "(48, 53)"), (57, "(60, 100)"), (116, "(60, 100)")])
def test_an_age_between_groups_goes_to_the_nearer(age, group):
    assert put_in_bin(age, AGE_GROUPS, "age") == group


def test_field_rules_for_adience_and_utkface_values():
    age, gender, race = make_field("age"), make_field("gender"), make_field("race")
    assert age.label("(25, 32)", "row") == "(25, 32)" and age.label("35", "row") == "(25, 32)"
    assert age.label("None", "row") is None and gender.label("u", "row") is None
    assert [gender.label(v, "row") for v in ("0", "1", "m", "f", "M")] == ["M", "F", "M", "F", "M"]
    assert race.label("3", "row") == "Indian" and age.ordered and not gender.ordered


def test_a_number_outside_every_bin_is_one_line():
    with pytest.raises(UserError, match=r"age '-1' of 7.jpg is outside every bin"):
        make_field("age").label("-1", "7.jpg")
    with pytest.raises(UserError, match="outside every bin"):
        make_field("size", [["small", 0, 10], ["big", 11, 20]]).label("25", "x.jpg")
    with pytest.raises(UserError, match="not a number"):
        make_field("age").label("old", "x.jpg")
    with pytest.raises(UserError, match="increasing order"):
        parse_bins([["b", 10, 20], ["a", 0, 5]])


@needs_utkface
def test_utkface_targets_share_one_stratified_seeded_split():
    gender = create_dataset(dataset_cfg("utkface", root=str(UTKFACE), size=8), seed=0)
    age = create_dataset(dataset_cfg("utkface", root=str(UTKFACE), size=8, target="age"), seed=0)
    assert gender.class_names == ["M", "F"] and age.class_names == [g.label for g in AGE_GROUPS]
    assert age.meta["ordered"] and not gender.meta["ordered"]
    sizes = {k: len(v) for k, v in gender.splits.items()}
    assert sum(sizes.values()) == 7672 and 700 <= sizes["test"] <= 800 and sizes == {k: len(v) for k, v in age.splits.items()}
    for name in ("train", "test"):  # the same faces in the same order, whatever the target
        assert gender.splits[name].fields == age.splits[name].fields
    test = gender.splits["test"]
    assert Counter(test.fields["gender"]) == {"M": int((test.labels == 0).sum()), "F": int((test.labels == 1).sum())}
    assert set(test.fields["race"]) == {"White", "Black", "Asian", "Indian", "Others"}
    female_share = [Counter(gender.splits[s].fields["gender"])["F"] / len(gender.splits[s]) for s in ("train", "test")]
    assert abs(female_share[0] - female_share[1]) < 0.02  # stratified
    other_seed = create_dataset(dataset_cfg("utkface", root=str(UTKFACE), size=8), seed=1)
    assert other_seed.splits["test"].fields != test.fields


@needs_utkface
def test_names_off_the_pattern_are_counted_and_skipped(tmp_path, capsys):
    for path in real_faces(60):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(real_faces(1)[0], tmp_path / "holiday.jpg")
    shutil.copy(real_faces(1)[0], tmp_path / "61_x_0_2017.jpg")
    data = create_dataset(dataset_cfg("utkface", root=str(tmp_path), size=8), seed=0)
    assert sum(len(s) for s in data.splits.values()) == 60
    assert "skipped 2 images" in capsys.readouterr().err
    with pytest.raises(UserError, match="choose one of: age, gender, race"):
        create_dataset(dataset_cfg("utkface", root=str(tmp_path), size=8, target="emotion"), seed=0)


def adience_folder(tmp_path, faces: list) -> tuple:
    """Adience's layout for real faces: <user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>, and a
    fold file listing them with Adience's columns (tab-separated; ages as groups or numbers)."""
    header = "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score"
    lines = [header]
    for i, path in enumerate(faces):
        age, gender = path.name.split("_")[:2]
        user = f"user{i % 3}"
        (tmp_path / user).mkdir(exist_ok=True)
        original = f"{i}.jpg"
        shutil.copy(path, tmp_path / user / f"coarse_tilt_aligned_face.{i}.{original}")
        age_text = f"({put_in_bin(float(age), AGE_GROUPS, 'age')[1:-1]})" if i % 2 else age
        lines.append(f"{user}\t{original}\t{i}\t{age_text}\t{'mf'[int(gender)]}\t0\t0\t200\t200\t0\t0\t80")
    fold = tmp_path / "fold_0_data.txt"
    fold.write_text("\n".join(lines) + "\n")
    return fold, lines


ADIENCE_PATH = "{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}"


@needs_utkface
def test_adience_fold_file_with_real_faces(tmp_path, capsys):
    fold, lines = adience_folder(tmp_path, real_faces(40))
    lines[3] = lines[3].replace("\tm\t", "\tu\t").replace("\tf\t", "\tu\t")  # an unknown gender
    lines.append("user9\tgone.jpg\t99\t(25, 32)\tf\t0\t0\t1\t1\t0\t0\t0")  # a row without its file
    fold.write_text("\n".join(lines) + "\n")
    cfg = dataset_cfg("table", file=str(fold), path=ADIENCE_PATH, target="gender", fields=["age", "gender"], size=8)
    data = create_dataset(cfg, seed=0)
    assert data.class_names == ["M", "F"] and sum(len(s) for s in data.splits.values()) == 39
    err = capsys.readouterr().err
    assert "skipped 2 images" in err and "1 whose file is missing" in err and "1 without a gender label" in err
    everyone = [g for s in data.splits.values() for g in s.fields["age"]]
    kept = [p for i, p in enumerate(real_faces(40)) if i != 2]  # face 2's row has gender u
    expected = [put_in_bin(float(p.name.split("_")[0]), AGE_GROUPS, "") for p in kept]
    assert Counter(everyone) == Counter(expected)
    cfg.strict = True
    with pytest.raises(UserError, match=r"gone.jpg \(line 42\) in dataset.file does not exist"):
        create_dataset(cfg, seed=0)


@needs_utkface
def test_kaggle_csv_and_bad_tables(tmp_path):
    faces = real_faces(30)
    rows = ["path,label"] + [f"{p},{'cat' if i % 2 else 'dog'}" for i, p in enumerate(faces)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = create_dataset(dataset_cfg("table", file=str(tmp_path / "labels.csv"), size=8), seed=0)
    assert data.class_names == ["cat", "dog"] and sum(len(s) for s in data.splits.values()) == 30
    (tmp_path / "empty_target.csv").write_text("\n".join(f"{p}," for p in ["path,label", *faces]) + "\n")
    with pytest.raises(UserError, match="has a label label .*values are all empty"):
        create_dataset(dataset_cfg("table", file=str(tmp_path / "empty_target.csv"), size=8), seed=0)
    with pytest.raises(UserError, match="has no column 'file'; its columns are: path, label"):
        create_dataset(dataset_cfg("table", file=str(tmp_path / "labels.csv"), path="file", size=8), seed=0)


def test_a_splits_files_carry_its_labels(tmp_path):
    """Faces named <age>_<gender>_<race>_...: each split's `paths` are in its images' order, so a file's
    name agrees with the labels the split holds for it (what eval names misclassified faces by)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(40):
        name = f"{(5, 30, 70)[i % 3]}_{i % 2}_{i % 5}_2017{i:04d}.jpg.chip.jpg"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / name, format="JPEG")
    data = create_dataset(dataset_cfg("utkface", root=str(tmp_path), size=8, target="age"), seed=0)
    for split in data.splits.values():
        assert len(split.paths) == len(split)
        genders = ["M" if p.name.split("_")[1] == "0" else "F" for p in split.paths]
        assert genders == split.fields["gender"]
        ages = [make_field("age", None).label(p.name.split("_")[0], p.name) for p in split.paths]
        assert ages == [data.class_names[i] for i in split.labels.tolist()]


@pytest.mark.parametrize("name, target, model", [("gender_lite0", "gender", "efficientnet_lite0"),
                                                 ("age_lite0", "age", "efficientnet_lite0"),
                                                 ("gender_levi_hassner", "gender", "levi_hassner"),
                                                 ("age_levi_hassner", "age", "levi_hassner")])
def test_age_gender_experiments_compose(name, target, model):
    from cnnexp.runner.compose import compose_config

    cfg = compose_config("train", [f"experiment={name}", "dataset.root=faces"])
    assert (cfg.dataset.name, cfg.dataset.target, cfg.model.name) == ("utkface", target, model)
    if model == "levi_hassner":  # the paper's recipe
        assert (cfg.augmentation.crop_size, cfg.trainer.batch_size, cfg.trainer.grad_clip) == ([227, 227], 50, 4.0)
        assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.model.dropout) == (1.0e-3, 5.0e-4, 0.5)
