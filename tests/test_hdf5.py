"""cnnexp data build-hdf5 and dataset=hdf5: round trip, streaming, damaged and foreign files."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import read_json
from test_folder import add_bad_files, photo_folder

from cnnexp.data import create_dataset
from cnnexp.data.stream import make_batches
from cnnexp.schemas.datasets import source_config


@pytest.fixture
def built(cnnexp, workdir):
    """photos/ (12 real photos a class, one truncated JPEG, a text file, a PGM) -> data/small.h5 at 24x24."""
    add_bad_files(photo_folder(workdir / "photos", per_class=12) / "cats")
    result = cnnexp("data", "build-hdf5", "src=photos", "out=data/small.h5", "size=24", "split=[0.5,0.25,0.25]",
                    "buffer=5", "workers=0")
    assert result.code == 0, result.err
    return workdir / "data" / "small.h5", result


def hdf5_cfg(path, **overrides):
    return source_config("hdf5", **{"path": str(path), "workers": 0, **overrides})


def test_build_round_trip(built):
    path, result = built
    assert "skipped 2 unreadable" in result.err and "train" in result.out and "small_mean.json" in result.out
    with h5py.File(path) as f:
        assert f.attrs["format"] == "cnnexp-hdf5"
        assert [str(n) for n in f.attrs["label_names"]] == ["cats", "dogs"]
        images, labels = f["train"]["images"][:], f["train"]["labels"][:]
        assert images.dtype == np.uint8 and images.shape[1:] == (24, 24, 3) and len(labels) == len(images)
        assert f["train"]["images"].chunks is not None
        assert sum(len(f[s]["labels"]) for s in ("train", "val", "test")) == 25  # 24 photos and the PGM
        assert np.bincount(f["val"]["labels"][:]).tolist()[1] == 3  # the dogs: 12 x 0.25
        mean = images.reshape(-1, 3).astype(np.float64).mean(0)
        assert np.allclose(f.attrs["mean"], mean)
        assert np.allclose(f.attrs["std"], images.reshape(-1, 3).astype(np.float64).std(0))
    stored = json.loads((path.parent / "small_mean.json").read_text())
    assert list(stored) == ["R", "G", "B"] and np.allclose(list(stored.values()), mean)


def test_dataset_reads_what_was_built(built):
    path, _ = built
    data = create_dataset(hdf5_cfg(path), seed=0)
    assert data.class_names == ["cats", "dogs"] and data.image_shape == (3, 24, 24)
    with h5py.File(path) as f:
        assert torch.equal(data.splits["val"].images, torch.from_numpy(f["val"]["images"][:]).permute(0, 3, 1, 2))
        assert data.meta["channel_stats"][0] == pytest.approx(list(f.attrs["mean"]))
    assert "channel_stats" not in create_dataset(hdf5_cfg(path, mean="train"), seed=0).meta


def test_streamed_batches_are_contiguous_blocks(built):
    path, _ = built
    memory = create_dataset(hdf5_cfg(path), seed=0).splits["train"]
    streamed = create_dataset(hdf5_cfg(path, in_memory=False), seed=0).splits["train"]
    n = len(memory)
    assert n % 5, "the test wants a short last batch"
    batches = make_batches(streamed, 5, shuffle=True)
    order = batches.order(torch.Generator().manual_seed(3))
    assert sorted(order.tolist()) == list(range(n)) and order[-1] == n - 1  # the short block stays last
    assert len({tuple(batches.order(torch.Generator().manual_seed(s)).tolist()) for s in range(8)}) > 1
    seen = list(batches.iterate(order, start=1))
    assert len(seen) == len(batches) - 1
    for (images, labels), rows in zip(seen, order[5:].split(5)):
        assert rows.tolist() == list(range(rows[0], rows[0] + len(rows)))
        assert torch.equal(images, memory.images[rows]) and torch.equal(labels, memory.labels[rows])
    assert torch.equal(streamed.images[torch.tensor([5, 1, 5])], memory.images[[5, 1, 5]])


def test_train_on_hdf5_in_memory_and_streamed(built, cnnexp, workdir):
    common = ("dataset=hdf5", "dataset.path=data/small.h5", "model=small_cnn", "model.widths=[8,16]",
              "augmentation=keras", "augmentation.crop_size=[20,20]", "trainer.epochs=2", "trainer.batch_size=4",
              "optimizer=adam", "trainer.eval_batch_size=5", "trainer.shuffle=false")
    for in_memory in ("true", "false"):
        result = cnnexp("train", *common, f"dataset.in_memory={in_memory}", f"hydra.run.dir=outputs/train/{in_memory}")
        assert result.code == 0, result.err
    memory, streamed = (read_json(workdir / "outputs" / "train" / d / "metrics.json") for d in ("true", "false"))
    assert memory["steps"] == streamed["steps"] == 6  # 12 training images, batches of 4, 2 epochs
    assert memory["best_val_error"] == streamed["best_val_error"]  # same order, same augmentation draws
    history = [(workdir / "outputs" / "train" / d / "history.csv").read_text().splitlines() for d in ("true", "false")]
    assert [row.split(",")[:5] for row in history[0]] == [row.split(",")[:5] for row in history[1]]
    ckpt = torch.load(workdir / "outputs" / "train" / "false" / "checkpoints" / "last.pt", weights_only=True)
    with h5py.File(built[0]) as f:
        assert ckpt["normalization"]["mean"] == pytest.approx(list(f.attrs["mean"]))
    assert ckpt["input_shape"] == [3, 20, 20]


def test_truncated_file_is_one_line(built, cnnexp_process, workdir):
    path, _ = built
    (workdir / "cut.h5").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = cnnexp_process("train", "dataset=hdf5", "dataset.path=cut.h5")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert result.err.startswith("error: ") and "cut.h5" in result.err and "build-hdf5" in result.err
    assert not (workdir / "outputs" / "train").exists() or not any((workdir / "outputs" / "train").iterdir())


@pytest.mark.parametrize("content", ["foreign", "text", "missing"])
def test_not_a_cnnexp_file_is_one_line(cnnexp, workdir, content):
    path = workdir / "other.h5"
    if content == "foreign":
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros(3)
    elif content == "text":
        path.write_text("hello\n")
    result = cnnexp("train", "dataset=hdf5", "dataset.path=other.h5")
    assert result.code == 2 and result.err.count("\n") == 1 and "other.h5" in result.err, result.err
    assert "cnnexp data build-hdf5" in result.err


def test_build_errors(cnnexp, workdir):
    assert "src is not set" in cnnexp("data", "build-hdf5", "out=x.h5").err
    result = cnnexp("data", "build-hdf5", "src=nowhere", "out=x.h5")
    assert result.code == 2 and "image folder" in result.err
    add_bad_files(photo_folder(workdir / "photos", per_class=3) / "cats")
    result = cnnexp("data", "build-hdf5", "src=photos", "out=x.h5", "size=16", "strict=true", "workers=0")
    assert result.code == 2 and "strict=false" in result.err and not (workdir / "x.h5").exists()
    result = cnnexp("data", "build-hdf5", "src=photos", "out=x.h5", "compression=zip")
    assert result.code == 2 and "compression=zip" in result.err
