"""dataset=folder on real photos: layouts, splits, resizing, unreadable files, streaming."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CATS_DOGS, need, only_run, read_json
from PIL import Image

from cnnexp.data import create_dataset
from cnnexp.data.images import read_image
from cnnexp.utils.errors import UserError
from cnnexp.schemas.datasets import MAX_PIXELS, source_config


def photo_folder(root, per_class=10, split_layout=False):
    """A copy of the first real cat and dog photos: root/{cats,dogs}/ (or root/{train,validation,test}/...)."""
    for name in ("cats", "dogs"):
        files = sorted((need(CATS_DOGS, "the cats-and-dogs photos") / "train" / name).iterdir())[:per_class]
        if split_layout:
            for split, part in (("train", files[:6]), ("validation", files[6:8]), ("test", files[8:])):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                for f in part:
                    shutil.copy(f, root / split / name / f.name)
        else:
            (root / name).mkdir(parents=True)
            for f in files:
                shutil.copy(f, root / name / f.name)
    return root


def add_bad_files(folder):
    """A truncated JPEG and a text file (unreadable) and a PGM (readable) in the cats folder."""
    good = sorted((need(CATS_DOGS, "the cats-and-dogs photos") / "train" / "cats").iterdir())[20]
    (folder / "broken.jpg").write_bytes(good.read_bytes()[:3000])
    (folder / "notes.txt").write_text("not an image\n")
    Image.open(good).convert("L").save(folder / "grey.pgm")


def folder_cfg(root, **overrides):
    return source_config("folder", **{"root": str(root), "size": 32, "workers": 0, **overrides})


def test_unsplit_folder_is_split_by_ratio_per_class(tmp_path):
    data = create_dataset(folder_cfg(photo_folder(tmp_path), split=[0.6, 0.2, 0.2]), seed=0)
    assert data.class_names == ["cats", "dogs"]
    assert {k: torch.bincount(v.labels).tolist() for k, v in data.splits.items()} == {
        "train": [6, 6], "val": [2, 2], "test": [2, 2]}
    assert data.image_shape == (3, 32, 32) and data.splits["train"].images.dtype == torch.uint8
    again = create_dataset(folder_cfg(tmp_path, split=[0.6, 0.2, 0.2]), seed=0)
    other = create_dataset(folder_cfg(tmp_path, split=[0.6, 0.2, 0.2]), seed=1)
    assert torch.equal(again.splits["val"].images, data.splits["val"].images)
    assert not torch.equal(other.splits["val"].images, data.splits["val"].images)


def test_split_layout_uses_its_folders(tmp_path):
    data = create_dataset(folder_cfg(photo_folder(tmp_path, split_layout=True), channels=1, size=[24, 16]), seed=0)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert data.image_shape == (1, 24, 16)


def test_resize_modes(tmp_path):
    photo = sorted((need(CATS_DOGS, "the cats-and-dogs photos") / "train" / "dogs").iterdir())[0]
    width, height = Image.open(photo).size
    simple = read_image(photo, 3, (32, 64), "simple", MAX_PIXELS)
    aspect = read_image(photo, 3, (32, 64), "aspect", MAX_PIXELS)
    assert simple.shape == aspect.shape == (32, 64, 3)
    assert not np.array_equal(simple, aspect) or width * 32 == height * 64


def test_streamed_images_match_in_memory(tmp_path):
    photo_folder(tmp_path, per_class=6)
    memory = create_dataset(folder_cfg(tmp_path, in_memory=True), seed=0)
    streamed = create_dataset(folder_cfg(tmp_path, in_memory=False, workers=2), seed=0)
    lazy = streamed.splits["train"].images
    assert lazy.shape == memory.splits["train"].images.shape
    assert torch.equal(lazy[:], memory.splits["train"].images)
    assert torch.equal(torch.cat(list(lazy.split(3))), memory.splits["train"].images)
    assert torch.equal(lazy[torch.tensor([4, 0, 2])], memory.splits["train"].images[[4, 0, 2]])


def test_auto_streams_above_the_memory_limit(tmp_path):
    photo_folder(tmp_path, per_class=4)
    assert create_dataset(folder_cfg(tmp_path), seed=0).meta["in_memory"] is True
    assert create_dataset(folder_cfg(tmp_path, memory_limit_mb=0.001), seed=0).meta["in_memory"] is False


QUICK = ("model=small_cnn", "model.widths=[8,16]", "dataset.size=32", "trainer.epochs=1",
         "trainer.batch_size=4", "optimizer=adam")


def test_trains_skipping_unreadable_files_with_one_warning(cnnexp, workdir):
    add_bad_files(photo_folder(workdir / "photos", per_class=6) / "cats")
    result = cnnexp("train", "dataset=folder", "dataset.root=photos", *QUICK)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 2 unreadable" in warnings[0], result.err
    run = only_run(workdir / "outputs" / "train")
    assert read_json(run / "metrics.json")["epochs_run"] == 1


def test_streamed_training(cnnexp, workdir):
    photo_folder(workdir / "photos", per_class=6)
    result = cnnexp("train", "dataset=folder", "dataset.root=photos", "dataset.in_memory=false",
                    "dataset.normalize=standardize", *QUICK)
    assert result.code == 0, result.err
    assert read_json(only_run(workdir / "outputs" / "train") / "metrics.json")["steps"] == 2  # 8 of the 12 photos train, batches of 4


def test_strict_names_the_bad_file(cnnexp_process, workdir):
    add_bad_files(photo_folder(workdir / "photos", per_class=4) / "cats")
    result = cnnexp_process("train", "dataset=folder", "dataset.root=photos", "dataset.strict=true", *QUICK)
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: cannot read ")
    assert "broken.jpg" in result.err or "notes.txt" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("overrides, message", [
    ((), "dataset.root is not set"),
    (("dataset.root=nowhere",), "image folder"),
    (("dataset.root=.", "dataset.size=[0,4]"), "size="),
    (("dataset.root=.", "dataset.resize=squash"), "resize=squash"),
])
def test_bad_folder_config_is_one_line(cnnexp, workdir, overrides, message):
    result = cnnexp("train", "dataset=folder", *overrides)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


def test_folder_without_classes_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="no class folders"):
        create_dataset(folder_cfg(tmp_path), seed=0)


def test_a_file_spoilt_after_the_check_is_a_clear_error(tmp_path):
    photo_folder(tmp_path, per_class=4)
    images = create_dataset(folder_cfg(tmp_path, in_memory=False, workers=2), seed=0).splits["train"].images
    images.paths[1].write_text("overwritten\n")
    with pytest.raises(UserError, match=r"^cannot read .*changed after the start of the run") as caught:
        list(images.split(2))
    assert "\n" not in str(caught.value)


def noise_folder(root, per_class=12):
    """root/{cats,dogs}/<class>.<i>.jpg: small random photos (no data outside the repository needed)."""
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (30, 36, 3), dtype=np.uint8)).save(root / name / f"{name}.{i}.jpg")
    return root


@pytest.mark.parametrize("in_memory", [True, False], ids=["in memory", "streamed"])
def test_each_split_knows_its_files(tmp_path, in_memory):
    """A split's `paths` are its images' files, in its order: an unreadable file is in none of them."""
    (noise_folder(tmp_path) / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    data = create_dataset(folder_cfg(tmp_path, in_memory=in_memory), seed=0)
    every = []
    for split in data.splits.values():
        assert len(split.paths) == len(split)
        assert [path.parent.name for path in split.paths] == [data.class_names[i] for i in split.labels.tolist()]
        assert torch.equal(split.images[:], torch.stack([torch.from_numpy(read_image(p, 3, (32, 32), "aspect", MAX_PIXELS))
                                                         .permute(2, 0, 1) for p in split.paths]))
        every += split.paths
    assert sorted(p.name for p in every) == sorted(p.name for p in tmp_path.rglob("*.jpg") if p.name != "broken.jpg")
    assert data.limit(3).splits["train"].paths == data.splits["train"].paths[:3]


def test_eval_names_the_misclassified_files(cnnexp, workdir):
    noise_folder(workdir / "photos")
    assert cnnexp("train", "dataset=folder", "dataset.root=photos", *QUICK).code == 0
    run = only_run(workdir / "outputs" / "train")
    result = cnnexp("eval", f"run={run}", "split=train")
    assert result.code == 0, result.err
    wrong = read_json(run / "eval" / "train" / "eval.json")["misclassified"]
    assert wrong and all(m["file"] == str(workdir / "photos" / m["true"] / Path(m["file"]).name) for m in wrong)
    lines = result.out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("misclassified (centre view): ")))
    for m, line in zip(wrong[:10], lines[start + 1:]):
        assert line.split() == [f"photos/{m['true']}/{Path(m['file']).name}", m["true"], "->", m["predicted"],
                                f"({m['prob']:.2f})"]
