"""cnnexp export: every zoo model as ONNX answering as PyTorch on real images (batch 1 and 7 from one
file), a trained run and a probe run exported and checked, the metadata enough for a script with only
onnxruntime/numpy/Pillow to give `cnnexp predict`'s answer, and bad input refused with nothing left."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnexp.cli import main
from cnnexp.data.sources.olivetti import embedded_gif, read_faces
from cnnexp.export.package import TOLERANCE, logit_difference
from cnnexp.export.runtime import OnnxModel
from cnnexp.export.writers import write_onnx
from cnnexp.models import create_model, list_models
from conftest import CATS_DOGS, need, only_run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "examples" / "onnx_predict.py"
SMALL = ("model.nkerns=[8,16]", "model.hidden=64", "trainer.epochs=3", "trainer.batch_size=40", "device.threads=1")
FACES = read_faces(embedded_gif())
TINY = {  # model -> (input shape, small-head keys): the whole network, small inputs, quick to export
    "lenet": ((1, 57, 47), {}), "lenet5": ((1, 32, 32), {}), "mnist_cnn": ((1, 28, 28), {}),
    "small_cnn": ((1, 57, 47), {}), "levi_hassner": ((3, 67, 67), {"dense": [32, 32]}),
    "alexnet_bn": ((3, 67, 67), {"dense": [32, 32]}), "face_cnn": ((3, 35, 25), {"dense": [32, 16]}),
    "vgg16": ((3, 32, 32), {"dense": [16]}), "vgg16_bn": ((1, 32, 32), {"dense": [16]}),
    "resnet18": ((3, 64, 64), {}), "resnet50": ((3, 64, 64), {}),
    "efficientnet_lite0": ((3, 64, 64), {}), "timm": ((3, 64, 64), {"arch": "resnet18"}),
}


def real_images(shape: tuple[int, int, int], count: int = 7) -> torch.Tensor:
    """Olivetti faces (grey) or dogs-vs-cats photos (RGB) resized to the shape, scaled to 0..1."""
    _, h, w = shape
    if shape[0] == 1:
        pictures = [Image.fromarray(face) for face in FACES[:count]]
    else:
        pictures = [Image.open(p).convert("RGB") for p in sorted((need(CATS_DOGS, "the cats-and-dogs photos") / "test").rglob("*.jpg"))[:count]]
    arrays = [np.asarray(p.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255 for p in pictures]
    return torch.from_numpy(np.stack([a.reshape(h, w, -1) for a in arrays])).permute(0, 3, 1, 2).contiguous()


def test_every_registered_model_has_a_case_here():
    assert sorted(TINY) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_exports_to_onnx_and_answers_as_pytorch(name, tmp_path):
    in_shape, keys = TINY[name]
    torch.manual_seed(0)
    model = create_model(name, in_shape, 5, **keys).eval()
    images = real_images(in_shape)
    write_onnx(model, images[:2], tmp_path / "m.onnx", opset=18, dynamic_batch=True)
    exported = OnnxModel(tmp_path / "m.onnx")
    with torch.no_grad():
        for batch in (images[:1], images[:7]):  # one file, two batch sizes
            expected, got = model(batch), exported(batch)
            assert got.shape == expected.shape
            assert logit_difference(expected, got) <= TOLERANCE
            assert torch.equal(expected.argmax(1), got.argmax(1))


# ---- the command on real runs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "faces"
    assert main(["train", *SMALL, f"hydra.run.dir={folder}"]) == 0
    return folder


@pytest.fixture(scope="module")
def face_files(tmp_path_factory):
    """Two Olivetti faces and a 90x70 colour picture (resized and turned grey on the way in)."""
    folder = tmp_path_factory.mktemp("faces")
    Image.fromarray(FACES[57]).save(folder / "face57.png")
    Image.fromarray(FACES[301]).save(folder / "face301.png")
    colours = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    Image.fromarray(colours).save(folder / "colours.png")
    return sorted(folder.iterdir())


def exported_metadata(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


def test_export_writes_the_file_and_its_metadata_after_checking_it(cnnexp, run):
    result = cnnexp("export", f"run={run}")
    assert result.code == 0, result.err
    out = run / "export" / "model.onnx"
    assert f"wrote {out} (onnx)" in result.out and "top-1 agrees on 16/16" in result.out
    meta = exported_metadata(out)
    assert meta["input_shape"] == [1, 57, 47] and meta["image_size"] == [57, 47] and meta["color"] == "L"
    assert meta["class_names"] == [f"person_{i:02d}" for i in range(40)] and meta["output"] == "logits"
    assert meta["mean"] == [0.0] and meta["std"] == [1.0]  # the Olivetti runs scale pixels to 0..1
    assert meta["run"] == str(run.resolve()) and meta["check"]["max_abs_diff"] <= TOLERANCE


def predict_rows(run: Path, files: list[Path], capsys) -> dict:
    capsys.readouterr()
    assert main(["predict", f"run={run}", f"image={files[0].parent}", "topk=3", "--json"]) == 0
    return {Path(row["image"]).name: row["top"] for row in map(json.loads, capsys.readouterr().out.splitlines())}


def script_rows(model_file: Path, files: list[Path]) -> dict:
    """The example script in a process where importing torch or cnnexp fails."""
    blocker = ("import sys, runpy\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'cnnexp'): raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               f"sys.argv = ['onnx_predict.py', {str(model_file)!r}, *{[str(f) for f in files]!r}]\n"
               f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                         check=True).stdout
    rows = {}
    for line in out.splitlines():
        path, *guesses = line.split("  ")
        path, first = path.split(" ", 1)
        pairs = [g.split(" ") for g in [first, *guesses]]
        rows[Path(path).name] = [{"label": label, "prob": float(prob)} for label, prob in pairs]
    return rows


def test_a_script_without_cnnexp_or_torch_answers_as_predict(run, face_files, capsys):
    model_file = run / "export" / "model.onnx"
    if not model_file.exists():
        assert main(["export", f"run={run}"]) == 0
    printed = predict_rows(run, face_files, capsys)
    scripted = script_rows(model_file, face_files)
    assert sorted(scripted) == sorted(printed)
    for name, guesses in scripted.items():
        assert [g["label"] for g in guesses] == [g["label"] for g in printed[name][:2]]
        assert all(abs(a["prob"] - b["prob"]) <= 1e-4 for a, b in zip(guesses, printed[name]))


def test_torchscript_export_loads_without_cnnexp(cnnexp, run):
    out = run / "ts" / "model.pt"
    assert cnnexp("export", f"run={run}", "format=torchscript", f"out={out}").code == 0
    loaded = torch.jit.load(str(out))
    faces = torch.from_numpy(FACES[:3]).float().div(255).unsqueeze(1)
    assert loaded(faces).shape == (3, 40)
    assert exported_metadata(out)["format"] == "torchscript"


@pytest.mark.parametrize("args, message", [
    (lambda run, tmp: [f"run={tmp / 'empty'}"], "no best checkpoint in the run folder"),
    (lambda run, tmp: [f"run={run}", "format=tflite"], "format=tflite is not one of: onnx, torchscript"),
    (lambda run, tmp: [f"run={run}", f"out={tmp / 'a_file' / 'model.onnx'}"], "cannot write out="),
], ids=["no checkpoint", "unknown format", "unwritable out"])
def test_bad_input_is_one_line_and_leaves_nothing(cnnexp_process, run, workdir, args, message):
    (workdir / "empty").mkdir()
    (workdir / "empty" / "config.yaml").write_text("seed: 0\n")
    (workdir / "a_file").write_text("not a folder\n")
    before = sorted(p for p in workdir.rglob("*"))
    result = cnnexp_process("export", *args(run, workdir))
    assert result.code == 2 and result.err.startswith("error: ") and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert sorted(p for p in workdir.rglob("*")) == before


def test_a_failed_check_leaves_nothing_behind(run, tmp_path, monkeypatch, capsys):
    """An exported file that answers differently (here: a check tolerance no float can meet) is an
    error, and neither the model file nor its JSON stays."""
    monkeypatch.setattr("cnnexp.export.package.TOLERANCE", -1.0)
    out = tmp_path / "model.onnx"
    assert main(["export", f"run={run}", f"out={out}"]) == 2
    assert "does not answer like the PyTorch model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_probe_run_exports_as_one_graph_and_answers_as_predict(cnnexp, workdir, face_files, capsys):
    """Network + fitted logistic regression in one ONNX file, its answers those of `cnnexp predict`."""
    features = workdir / "faces.h5"
    assert cnnexp("features", "model=lenet", "model.hidden=64", "dataset=olivetti", "device=cpu",
                  f"out={features}").code == 0
    assert cnnexp("probe", f"features={features}", "C=[0.1]", "cv=2", "threads=1").code == 0
    run = only_run(workdir / "outputs" / "probe")
    result = cnnexp("export", f"run={run}")
    assert result.code == 0, result.err
    model_file = run / "export" / "model.onnx"
    assert exported_metadata(model_file)["class_names"] == [f"person_{i:02d}" for i in range(40)]
    printed = predict_rows(run, face_files, capsys)
    for name, guesses in script_rows(model_file, face_files).items():
        assert [g["label"] for g in guesses] == [g["label"] for g in printed[name][:2]]
        assert all(abs(a["prob"] - b["prob"]) <= 1e-4 for a, b in zip(guesses, printed[name]))


def test_a_fixed_batch_export_takes_one_image(cnnexp, run, tmp_path):
    out = tmp_path / "fixed.onnx"
    result = cnnexp("export", f"run={run}", f"out={out}", "dynamic_batch=false")
    assert result.code == 0, result.err
    session = OnnxModel(out).session
    assert session.get_inputs()[0].shape == [1, 1, 57, 47]
    assert exported_metadata(out)["dynamic_batch"] is False


def test_the_export_guide_shows_the_script_as_it_is():
    guide = (ROOT / "docs" / "how-to" / "export.md").read_text()
    shown = guide.split("```python\ndef model_input", 1)[1].split("```", 1)[0]
    assert "def model_input" + shown in SCRIPT.read_text()
