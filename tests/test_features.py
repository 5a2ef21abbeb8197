"""cnnexp features: features equal a direct forward pass, the HDF5 layout and attributes, the default
and named layers, atomic writing (a killed run leaves no file), and bad input."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from conftest import MNIST_ROOT, need
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from cnnexp.cli import main
from cnnexp.data import create_dataset
from cnnexp.features.layers import choose_layer
from cnnexp.models import create_model, model_kwargs

TINY_RUN = ("model.nkerns=[4,8]", "model.hidden=32", "trainer.epochs=1", "trainer.batch_size=20",
            "augmentation=patch", "augmentation.crop_size=[52,42]")
FOLDER = ("dataset=folder", "dataset.size=20", "dataset.workers=0")


def tiny_folder(root, per_split=(4, 2, 2)):
    """root/{train,validation,test}/{red,blue}/*.png: 20x20 noise around a colour per class."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "validation", "test"), per_split):
        for name, colour in (("blue", (40, 60, 200)), ("red", (200, 50, 40))):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def photos(workdir):
    return tiny_folder(workdir / "photos")


@pytest.fixture(scope="module")
def olivetti_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "faces"
    assert main(["train", *TINY_RUN, "dataset.limit=40", f"hydra.run.dir={run}"]) == 0
    return run


def folder_data(root):
    from cnnexp.schemas.datasets import source_config

    cfg = source_config("folder", root=str(root), size=20, workers=0)
    return create_dataset(cfg, seed=0)


def test_registry_model_features_equal_a_direct_forward_pass(cnnexp, photos):
    result = cnnexp("features", "model=small_cnn", *FOLDER, "dataset.root=photos", "out=f.h5", "batch_size=3",
                    "write_buffer=2")
    assert result.code == 0, result.err
    assert "small_cnn, input of" in result.out and "-> 256 floats an image" in result.out

    torch.manual_seed(0)
    model = create_model("small_cnn", (3, 20, 20), 2).eval()
    data = folder_data(photos)
    with h5py.File(photos.parent / "f.h5") as f:
        for split in ("train", "val", "test"):
            x = data.splits[split].images.float() / 255  # dataset.normalize=scale
            with torch.no_grad():
                direct = model[:-1](x)  # everything before the last Linear: conv blocks, global pool, flatten
            assert f[split]["features"].shape == (len(x), 256)
            np.testing.assert_allclose(f[split]["features"][:], direct.numpy(), atol=1e-5)
            assert f[split]["labels"][:].tolist() == data.splits[split].labels.tolist()

    # streamed from the files (the folder source's path for sets larger than memory): the same numbers
    streamed = cnnexp("features", "model=small_cnn", *FOLDER, "dataset.root=photos", "dataset.in_memory=false",
                      "out=streamed.h5", "batch_size=3")
    assert streamed.code == 0, streamed.err
    with h5py.File(photos.parent / "f.h5") as f, h5py.File(photos.parent / "streamed.h5") as g:
        for split in ("train", "val", "test"):
            np.testing.assert_allclose(g[split]["features"][:], f[split]["features"][:], atol=1e-6)


def test_run_features_use_the_runs_preprocessing_and_the_file_layout(cnnexp, olivetti_run):
    result = cnnexp("features", f"run={olivetti_run}", "out=faces.h5", "splits=[train,test]", "batch_size=7")
    assert result.code == 0, result.err
    ckpt = torch.load(olivetti_run / "checkpoints" / "best.pt", weights_only=True)
    model = create_model("lenet", ckpt["input_shape"], 40, **model_kwargs(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    data = create_dataset(OmegaConf.create(ckpt["config"]["dataset"]), 0).limit(40)
    with h5py.File("faces.h5") as f:
        assert sorted(f) == ["test", "train"]
        for split in ("train", "test"):
            x = data.splits[split].images.float()[..., 2:54, 2:44] / 255  # the run's centre 52x42 crop, scaled
            with torch.no_grad():
                direct = model.classifier[:-1](model.features(x).flatten(1))  # input of the last Linear
            features = f[split]["features"]
            assert features.dtype == np.float32 and features.chunks is not None and features.shape == (40, 32)
            assert f[split]["labels"].dtype == np.int64
            np.testing.assert_allclose(features[:], direct.numpy(), atol=1e-5)
        attrs = f.attrs
        assert attrs["format"] == "cnnexp-features" and attrs["model"] == "lenet"
        assert [n.decode() if isinstance(n, bytes) else n for n in attrs["label_names"]] == ckpt["class_names"]
        assert attrs["source_run"] == str(olivetti_run.resolve())
        assert attrs["weights"].endswith("best.pt") and attrs["layer"] == "classifier.3"
        assert attrs["layer_take"] == "input" and attrs["feature_dim"] == 32
        assert list(attrs["input_size"]) == [1, 52, 42] and list(attrs["image_size"]) == [1, 57, 47]
        assert attrs["normalize"] == "scale" and len(attrs["mean"]) == 1 and len(attrs["std"]) == 1

    # --tencrop: the mean features of the four corner and centre windows and their mirrors
    result = cnnexp("features", f"run={olivetti_run}", "out=ten.h5", "splits=[test]", "--tencrop")
    assert result.code == 0, result.err
    x = data.splits["test"].images.float() / 255
    views = [x[..., t : t + 52, l : l + 42] for t, l in ((0, 0), (0, 5), (5, 0), (5, 5), (2, 2))]
    views += [v.flip(-1) for v in views]
    with torch.no_grad():
        mean = torch.stack([model.classifier[:-1](model.features(v).flatten(1)) for v in views]).mean(0)
    with h5py.File("ten.h5") as f:
        np.testing.assert_allclose(f["test"]["features"][:], mean.numpy(), atol=1e-5)
        assert bool(f.attrs["tencrop"])


def test_named_layer_pooled_flattened_and_refused_when_huge(cnnexp, photos):
    base = ("model=small_cnn", *FOLDER, "dataset.root=photos", "splits=[test]")
    pooled = cnnexp("features", *base, "layer=4", "pool=avg", "out=pooled.h5")  # the second conv block's conv
    assert pooled.code == 0, pooled.err
    torch.manual_seed(0)
    model = create_model("small_cnn", (3, 20, 20), 2).eval()
    x = folder_data(photos).splits["test"].images.float() / 255
    with torch.no_grad():
        direct = model[:5](x)  # 64 x 5 x 5
    with h5py.File("pooled.h5") as f:
        np.testing.assert_allclose(f["test"]["features"][:], direct.mean((2, 3)).numpy(), atol=1e-5)
        assert f.attrs["layer_description"] == "global average pool of output of 4"

    flat = cnnexp("features", *base, "layer=4", "out=flat.h5")
    assert flat.code == 0, flat.err
    with h5py.File("flat.h5") as f:
        np.testing.assert_allclose(f["test"]["features"][:], direct.flatten(1).numpy(), atol=1e-5)

    huge = cnnexp("features", *base, "layer=4", "max_features=1000", "out=huge.h5")
    assert huge.code == 2 and len(huge.err.strip().splitlines()) == 1
    assert huge.err.startswith("error: layer=4 gives 1,600 floats an image (64x5x5") and "pool=avg" in huge.err
    assert not (photos.parent / "huge.h5").exists()

    listing = cnnexp("features", *base, "layer=list")
    assert listing.code == 0 and "AdaptiveAvgPool2d" in listing.out and "64x5x5" in listing.out


def test_default_layer_pools_an_adaptively_pooled_map_but_not_a_lenet():
    class VGGish(nn.Module):  # torchvision's VGG shape: conv stage, adaptive 7x7 pool, flatten, dense layers
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(nn.Linear(8 * 49, 32), nn.ReLU(), nn.Linear(32, 5))

        def forward(self, x):
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    vgg = choose_layer(VGGish(), (3, 28, 28), None, None, 16384)
    assert (vgg.name, vgg.take, vgg.pool, vgg.dim) == ("avgpool", "output", "avg", 8)
    lenet = choose_layer(create_model("lenet", (1, 28, 28), 10), (1, 28, 28), None, None, 16384)
    assert (lenet.name, lenet.take, lenet.pool, lenet.dim) == ("classifier.3", "input", None, 500)
    from torchvision.models import resnet18

    resnet = choose_layer(resnet18(num_classes=3), (3, 64, 64), None, None, 16384)
    assert (resnet.name, resnet.take, resnet.dim) == ("fc", "input", 512)


def part_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def start_features(workdir, out: str, *extra: str) -> subprocess.Popen:
    """50,000 images, one a batch and one row a write: many seconds of writing to kill."""
    return subprocess.Popen([sys.executable, "-m", "cnnexp", "features", "model=lenet", "dataset=mnist",
                             f"dataset.root={need(MNIST_ROOT, 'MNIST')}", "splits=[train]", "batch_size=1", "write_buffer=1",
                             "device=cpu", "device.threads=1", f"out={out}", *extra],
                            cwd=workdir, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_run_leaves_no_file_and_keeps_the_old_one(workdir):
    """SIGKILL mid-way: nothing under a new out=; with overwrite=true, the file that was there is untouched."""
    (workdir / "old.h5").write_bytes(b"the previous features")
    runs = {"new.h5": start_features(workdir, "new.h5"), "old.h5": start_features(workdir, "old.h5", "overwrite=true")}
    parts = [workdir / f".{out}.part" for out in runs]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in parts) and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in runs.values()):
            break
        time.sleep(0.1)
    time.sleep(1.0)  # rows are being written now
    still_running = [proc.poll() is None for proc in runs.values()]
    for proc in runs.values():
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert all(still_running) and all(p.exists() for p in parts)
    assert not (workdir / "new.h5").exists()
    assert (workdir / "old.h5").read_bytes() == b"the previous features"


@pytest.mark.parametrize("args, message", [
    (("model=small_cnn", "dataset=folder", "dataset.root=photos"), "error: say where to write the features: out="),
    (("out=x.h5",), "error: say which network: run=<train run folder>"),
    (("model=small_cnn", "out=x.h5"), "error: model=small_cnn needs a dataset: dataset=folder"),
    (("model=small_cnn", *FOLDER, "dataset.root=photos", "out=x.h5", "layer=nope"),
     "error: layer=nope is not a module of this model"),
    (("model=small_cnn", *FOLDER, "dataset.root=photos", "out=x.h5", "pool=avg"), "error: pool= applies to a named"),
    (("model=small_cnn", *FOLDER, "dataset.root=photos", "out=x.h5", "splits=[dev]"), "error: splits=['dev'] must"),
    (("model=small_cnn", *FOLDER, "dataset.root=photos", "out=x.h5", "mean=[0.5]"), "error: mean=[0.5] and std="),
    (("model=small_cnn", *FOLDER, "dataset.root=photos", "out=photos"), "error: out=photos exists"),
])
def test_bad_input_is_one_line_exit_2(cnnexp, photos, args, message):
    result = cnnexp("features", *args)
    assert result.code == 2 and result.err.startswith(message), result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (photos.parent / "x.h5").exists() and not part_files(photos.parent)


def test_existing_file_is_kept_unless_overwrite(cnnexp, photos):
    (photos.parent / "f.h5").write_text("keep me")
    args = ("model=small_cnn", *FOLDER, "dataset.root=photos", "out=f.h5", "splits=[test]")
    refused = cnnexp("features", *args)
    assert refused.code == 2 and "out=f.h5 exists" in refused.err and "overwrite=true" in refused.err
    assert (photos.parent / "f.h5").read_text() == "keep me"
    assert cnnexp("features", *args, "overwrite=true").code == 0
    with h5py.File(photos.parent / "f.h5") as f:
        assert list(f) == ["test"]


def test_torchvision_model_with_a_weights_file_and_its_normalisation(cnnexp, photos, monkeypatch):
    """model=resnet18 model.weights=IMAGENET1K_V1 from a TORCH_HOME cache: features are the pooled 512-d
    vector of torchvision's own resnet18 with those weights, normalised with ImageNet's mean/std.
    Runs once the model zoo (model.weights) is in the tree."""
    pytest.importorskip("cnnexp.models.weights")
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet18().eval()
    cache = photos.parent / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(photos.parent / "torch_home"))
    result = cnnexp("features", "model=resnet18", "model.weights=IMAGENET1K_V1", "model.download=false", *FOLDER,
                    "dataset.root=photos", "splits=[test]", "out=resnet.h5")
    assert result.code == 0, result.err
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (folder_data(photos).splits["test"].images.float() / 255 - mean[:, None, None]) / std[:, None, None]
    reference.fc = nn.Identity()
    with torch.no_grad(), h5py.File("resnet.h5") as f:
        np.testing.assert_allclose(f["test"]["features"][:], reference(x).numpy(), atol=1e-4)
        assert f.attrs["weights"] == "IMAGENET1K_V1" and f.attrs["layer"] == "fc" and f.attrs["feature_dim"] == 512
        np.testing.assert_allclose(f.attrs["mean"], 255 * mean.numpy(), rtol=1e-6)
