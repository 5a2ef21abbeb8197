"""model.weights= with real files in every format, model.freeze= / model.trainable=, head_lr_mult."""

import json
import os
import pickle
import shutil

import pytest
import torch
import torchvision
from conftest import only_run
from omegaconf import OmegaConf
from PIL import Image

from cnnexp.engine.build import build_optimizer
from cnnexp.models import create_model
from cnnexp.models.freeze import FrozenBatchNorm, apply_freeze, parameter_groups
from cnnexp.models.weights import load_weights, read_weights
from cnnexp.utils.errors import UserError

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name torchvision's IMAGENET1K_V1 URL ends in
FAST = ("model=resnet18", "trainer.epochs=1", "trainer.batch_size=8", "device.threads=1", "model.download=false")


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    """A real state dict from torchvision's own resnet18() (random init, 1000 classes), as saved by users."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / RESNET18_FILE
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """12 small RGB images in each of two classes (folder dataset, split 8/2/2 per class)."""
    root = tmp_path_factory.mktemp("colours")
    generator = torch.Generator().manual_seed(0)
    for label, base in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / label).mkdir()
        for i in range(12):
            noise = torch.randint(-40, 40, (32, 32, 3), generator=generator)
            pixels = (torch.tensor(base) + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def folder_args(root):
    return ("dataset=folder", f"dataset.root={root}", "dataset.size=32", "dataset.workers=0")


def backbone(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def test_torchvision_state_dict_loads_every_backbone_tensor(resnet_file):
    model = create_model("resnet18", (3, 64, 64), 5)
    report = load_weights(model, read_weights(str(resnet_file), {"name": "resnet18", "download": False}), "resnet18")
    saved = torch.load(resnet_file, weights_only=True)
    for name, tensor in backbone(model.state_dict()).items():
        assert torch.equal(tensor, saved[name]), name
    assert report.dropped == ["fc.weight [1000, 512] vs [5, 512]", "fc.bias [1000] vs [5]"]
    assert not report.missing and not report.unused and len(report.loaded) == len(saved) - 2


def test_wrapped_prefixed_and_safetensors_files_load_alike(resnet_file, tmp_path):
    from safetensors.torch import save_file

    saved = torch.load(resnet_file, weights_only=True)
    torch.save({"state_dict": {f"module._orig_mod.{k}": v for k, v in saved.items()}}, tmp_path / "ddp.pt")
    save_file(saved, tmp_path / "model.safetensors")
    for path in (tmp_path / "ddp.pt", tmp_path / "model.safetensors"):
        model = create_model("resnet18", (3, 64, 64), 1000)
        report = load_weights(model, read_weights(str(path), {"name": "resnet18", "download": False}), "resnet18")
        assert not report.dropped and not report.missing and not report.unused, path
        assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_grey_model_sums_the_rgb_filters(resnet_file):
    model = create_model("resnet18", (1, 32, 32), 10)
    report = load_weights(model, read_weights(str(resnet_file), {"name": "resnet18", "download": False}), "resnet18")
    saved = torch.load(resnet_file, weights_only=True)
    assert report.summed_to_grey == ["conv1.weight"]
    assert torch.equal(model.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))


def test_weights_of_another_architecture_are_an_error(resnet_file):
    with pytest.raises(UserError, match="no tensor of .* fits model lenet"):
        load_weights(create_model("lenet", (1, 28, 28), 10), read_weights(str(resnet_file), {"name": "lenet", "download": False}), "lenet")


def test_one_epoch_with_freeze_keeps_frozen_tensors_and_bn_stats(cnnexp, workdir, resnet_file, colour_folder):
    frozen = ("conv1", "bn1", "layer1", "layer2")
    result = cnnexp("train", *FAST, *folder_args(colour_folder), f"model.weights={resnet_file}",
                    f"model.freeze=[{','.join(frozen)}]")
    assert result.code == 0, result.err
    run = only_run(workdir / "outputs" / "train")
    saved = torch.load(resnet_file, weights_only=True)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    after = ckpt["model"]
    for name, tensor in backbone(after).items():
        if name.split(".")[0] in frozen:  # weights, biases and BN running mean/var/count, bit for bit
            assert torch.equal(tensor, saved[name]), name
        elif not name.endswith("num_batches_tracked"):
            assert not torch.equal(tensor, saved[name]), name
    trainable = [n for n in backbone(after) if n.split(".")[0] not in frozen and n in dict(create_model(
        "resnet18", (3, 32, 32), 2).named_parameters())]
    assert sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]) == len(trainable) + 2  # + fc
    report = json.loads((run / "weights.json").read_text())
    assert report["kind"] == "file" and report["dropped"] == ["fc.weight [1000, 512] vs [2, 512]", "fc.bias [1000] vs [2]"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trainable_params"] < metrics["params"] == 11_177_538
    printed = " ".join(result.out.split())  # the summary table wraps long lines
    assert f"{metrics['trainable_params']:,} trainable of 11,177,538 parameters" in printed
    assert "dropped (shape differs) fc.weight [1000, 512] vs [2, 512]" in printed


def test_torchvision_name_is_served_from_the_torch_home_cache(cnnexp, workdir, resnet_file, colour_folder,
                                                               monkeypatch):
    cache = workdir / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(resnet_file, cache / RESNET18_FILE)
    monkeypatch.setenv("TORCH_HOME", str(workdir / "torch_home"))
    result = cnnexp("train", *FAST, *folder_args(colour_folder), "model.weights=IMAGENET1K_V1", "model.trainable=[fc]")
    assert result.code == 0, result.err
    run = only_run(workdir / "outputs" / "train")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    saved = torch.load(resnet_file, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in backbone(ckpt["model"]).items())
    # ImageNet's preprocessing replaces the folder's default scaling, and is recorded with the run
    assert ckpt["normalization"]["mode"] == "standardize"
    assert ckpt["normalization"]["mean"] == pytest.approx([255 * 0.485, 255 * 0.456, 255 * 0.406])
    record = json.loads((run / "weights.json").read_text())
    assert record["kind"] == "torchvision" and record["input_size"] == [224, 224]
    assert record["path"] == str(cache / RESNET18_FILE)
    assert "the weights were trained at 224x224" in " ".join(result.out.split())


def test_missing_cache_file_is_one_error_line_saying_what_to_put_where(cnnexp_process, workdir, colour_folder):
    env_home = workdir / "empty_home"
    os.environ["TORCH_HOME"] = str(env_home)
    try:
        result = cnnexp_process("train", *FAST, *folder_args(colour_folder), "model.weights=IMAGENET1K_V1")
    finally:
        del os.environ["TORCH_HOME"]
    assert result.code == 2 and "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert f"put {RESNET18_FILE} (from https://download.pytorch.org/models/{RESNET18_FILE}) at " \
           f"{env_home / 'hub' / 'checkpoints' / RESNET18_FILE}" in lines[0]
    assert not (workdir / "outputs" / "train").exists() or not any((workdir / "outputs" / "train").glob("*/checkpoints"))


class Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("save", [torch.save, lambda obj, path: path.write_bytes(pickle.dumps(obj))])
def test_a_weights_file_with_code_is_refused_and_not_run(cnnexp, workdir, save):
    marker = workdir / "pwned"
    save({"conv1.weight": Exploit(marker)}, workdir / "evil.pth")
    result = cnnexp("train", *FAST, "model.weights=evil.pth")
    assert result.code == 2
    assert result.err.startswith("error: evil.pth is not a safe weights file (")
    assert not marker.exists()


def test_a_run_starts_a_new_run_with_a_new_head(cnnexp, workdir, colour_folder, tmp_path):
    """A run on two classes seeds a run on three: the backbone carries over, the head is new, and the
    first run's normalisation is used."""
    assert cnnexp("train", *FAST, *folder_args(colour_folder), "dataset.normalize=standardize",
                  "hydra.run.dir=first").code == 0
    three = tmp_path / "three"
    shutil.copytree(colour_folder, three)
    shutil.copytree(colour_folder / "red", three / "green")
    result = cnnexp("train", *FAST, *folder_args(three), "model.weights=first", "model.trainable=[layer4,fc]",
                    "hydra.run.dir=second")
    assert result.code == 0, result.err
    first = torch.load(workdir / "first" / "checkpoints" / "best.pt", weights_only=True)
    second = torch.load(workdir / "second" / "checkpoints" / "last.pt", weights_only=True)
    assert torch.equal(first["model"]["conv1.weight"], second["model"]["conv1.weight"])
    assert second["model"]["fc.weight"].shape == (3, 512)
    assert second["normalization"] == first["normalization"]
    assert json.loads((workdir / "second" / "weights.json").read_text())["kind"] == "run"


def test_frozen_batch_norm_is_a_module_that_keeps_its_statistics():
    model = create_model("resnet18", (3, 32, 32), 2)
    unfrozen_state = model.state_dict()
    report = apply_freeze(model, ["conv1", "bn1", "layer1"], None, "resnet18")
    assert isinstance(model.bn1, FrozenBatchNorm) and isinstance(model.layer1[0].bn2, FrozenBatchNorm)
    assert isinstance(model.layer2[0].bn1, torch.nn.BatchNorm2d)
    assert not any("train" in vars(m) or "forward" in vars(m) for m in model.modules())  # nothing patched
    model.train()
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(model.bn1.running_mean, before)
    assert report.frozen_norm_layers == 5 and report.trainable < report.total
    # a frozen layer computes what the batch-norm layer it replaced computes in evaluation mode
    norm = torch.nn.BatchNorm2d(64).eval()
    norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.weight.data.uniform_(0, 2)
    x = torch.randn(2, 64, 5, 5)
    assert torch.allclose(FrozenBatchNorm(norm).train()(x), norm(x), atol=1e-6)


def test_freezing_keeps_checkpoints_loadable_both_ways():
    """The state dict's keys are those of the unfrozen model (checkpoints written before freezing was a
    module, and by unfrozen runs, load strictly into a frozen model, and a frozen run's into an unfrozen one)."""
    unfrozen = create_model("resnet18", (3, 32, 32), 2)
    frozen = create_model("resnet18", (3, 32, 32), 2)
    apply_freeze(frozen, ["conv1", "bn1", "layer1"], None, "resnet18")
    assert list(frozen.state_dict()) == list(unfrozen.state_dict())
    with torch.no_grad():
        unfrozen.bn1.running_var.fill_(3.0)
    frozen.load_state_dict(unfrozen.state_dict())
    assert torch.equal(frozen.bn1.running_var, torch.full((64,), 3.0))
    unfrozen.load_state_dict(frozen.state_dict())


def test_trainable_and_vgg_block_aliases():
    model = create_model("vgg16", (3, 32, 32), 2, dense=[8])
    apply_freeze(model, [], ["block5", "classifier"], "vgg16")
    trainable = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"features.24", "features.26", "features.28", "classifier.0", "classifier.3"}


@pytest.mark.parametrize("freeze, trainable, message", [
    (["layer9"], None, r"model.freeze=\[layer9\] names no module of resnet18; use module names such as conv1, bn1"),
    (["layer"], None, "names no module"),  # prefixes match whole names: layer is not layer1
    ([], ["nothing"], r"model.trainable=\[nothing\] names no module"),
    (["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"], None, "leave no parameter of resnet18 to train"),
])
def test_bad_freeze_lists_are_user_errors(freeze, trainable, message):
    with pytest.raises(UserError, match=message):
        apply_freeze(create_model("resnet18", (3, 32, 32), 2), freeze, trainable, "resnet18")


def test_head_lr_mult_gives_the_head_its_own_learning_rate():
    model = create_model("resnet18", (3, 32, 32), 2)
    apply_freeze(model, ["conv1", "bn1", "layer1"], None, "resnet18")
    cfg = OmegaConf.create({"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9, "head_lr_mult": 10.0})
    optimizer = build_optimizer(cfg, parameter_groups(model, 10.0, 0.01))
    backbone_group, head_group = optimizer.param_groups
    assert backbone_group["lr"] == 0.01 and head_group["lr"] == pytest.approx(0.1)
    assert {id(p) for p in head_group["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    frozen = {id(p) for p in model.layer1.parameters()}
    assert not frozen & {id(p) for p in backbone_group["params"]}
