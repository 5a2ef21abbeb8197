"""cnnexp predict: best guesses as the tutorial prints them, tables and JSON lines, Haar face
detection, image=olivetti, and bad images."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnexp.cli import main
from conftest import photo_with_face
from cnnexp.data.sources.olivetti import embedded_gif, read_faces
from cnnexp.models import create_model, model_kwargs

TINY = ("model.nkerns=[4,8]", "model.hidden=32", "trainer.epochs=2", "optimizer.lr=0.1", "trainer.batch_size=20",
        "augmentation=patch")
FACES = read_faces(embedded_gif())
PASTED_AT = (200, 100, 188, 228)  # x, y, w, h of the face pasted on the background


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "faces"
    assert main(["train", *TINY, f"hydra.run.dir={folder}"]) == 0
    return folder


@pytest.fixture
def images(workdir):
    """face.png (one Olivetti face), pasted.png (a face, enlarged, on a 640x480 grey background),
    blank.png (no face), all in images/."""
    folder = workdir / "images"
    folder.mkdir()
    Image.fromarray(FACES[57]).save(folder / "face.png")
    x, y, w, h = PASTED_AT
    background = Image.new("RGB", (640, 480), (120, 130, 140))
    background.paste(Image.fromarray(FACES[123]).resize((w, h), Image.Resampling.BILINEAR), (x, y))
    background.save(folder / "pasted.jpg", quality=95)
    Image.new("RGB", (300, 200), (200, 200, 200)).save(folder / "blank.png")
    return folder


@torch.no_grad()
def direct_probs(run, faces: np.ndarray) -> torch.Tensor:
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    kwargs = model_kwargs(ckpt["config"]["model"])
    model = create_model("lenet", ckpt["input_shape"], 40, **kwargs)
    model.load_state_dict(ckpt["model"])
    x = torch.from_numpy(faces).float().div(255).unsqueeze(1)[..., 2:54, 2:44]  # centre 52x42
    return model.eval()(x).softmax(1)


def test_best_two_guesses_for_a_face(cnnexp, run, images):
    result = cnnexp("predict", f"run={run}", "image=images/face.png")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0] == "images/face.png" and len(lines) == 3
    probs, labels = direct_probs(run, FACES[57:58])[0].topk(2)
    for rank, (line, p, label) in enumerate(zip(lines[1:], probs.tolist(), labels.tolist()), 1):
        assert line == f"Guess @{rank} person_{label:02d}, prob = {p:.2f}"


def test_json_lines_for_a_folder(cnnexp, run, images):
    result = cnnexp("predict", f"run={run}", "image=images", "topk=3", "--json")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.strip().splitlines()]
    assert [Path(r["image"]).name for r in rows] == ["blank.png", "face.png", "pasted.jpg"]
    for row in rows:
        probs = [g["prob"] for g in row["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    expected = direct_probs(run, FACES[57:58])[0].topk(3)
    assert [g["label"] for g in rows[1]["top"]] == [f"person_{i:02d}" for i in expected.indices.tolist()]


def test_a_list_of_named_files_answers_each_in_order(cnnexp, run, images):
    result = cnnexp("predict", f"run={run}", "image=[images/face.png,images/blank.png,images/face.png]", "--json")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.strip().splitlines()]
    assert [r["image"] for r in rows] == ["images/face.png", "images/blank.png"]  # a file named twice: once
    expected = direct_probs(run, FACES[57:58])[0].topk(2)
    assert [g["label"] for g in rows[0]["top"]] == [f"person_{i:02d}" for i in expected.indices.tolist()]
    table = cnnexp("predict", f"run={run}", "image=[images/face.png,images/pasted.jpg]")
    assert table.code == 0 and table.out.splitlines()[0].split()[:2] == ["image", "guess"], table.out
    assert [line.split()[0] for line in table.out.splitlines()[1:]] == ["images/face.png", "images/pasted.jpg"]


def test_detect_face(cnnexp, run, images):
    result = cnnexp("predict", f"run={run}", "image=images/pasted.jpg", "detect_face=true", "--json")
    assert result.code == 0, result.err
    row = json.loads(result.out)
    x, y, w, h = row["face"]
    px, py, pw, ph = PASTED_AT
    assert px <= x + w / 2 <= px + pw and py <= y + h / 2 <= py + ph and w > 100  # the pasted face, not noise
    assert len(row["top"]) == 2

    blank = cnnexp("predict", f"run={run}", "image=images/blank.png", "detect_face=true")
    assert blank.code == 0 and blank.out.strip().splitlines() == ["images/blank.png", "no face found"]

    table = cnnexp("predict", f"run={run}", "image=images/*.*", "detect_face=true")
    assert table.code == 0, table.err
    assert "guess @1" in table.out and "guess @2" in table.out
    lines = {line.split()[0]: line for line in table.out.splitlines() if line.startswith("images/")}
    assert "no face found" in lines["images/blank.png"] and "no face found" not in lines["images/pasted.jpg"]


def test_whole_olivetti_gif(cnnexp, run):
    result = cnnexp("predict", f"run={run}", "image=olivetti", "--json")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.strip().splitlines()]
    predicted = direct_probs(run, FACES).argmax(1)
    assert len(rows) == 400
    assert [r["top"][0]["label"] for r in rows] == [f"person_{i:02d}" for i in predicted.tolist()]
    assert [r["index"] for r in rows if not r["correct"]] == (predicted != torch.arange(400) // 10).nonzero().flatten().tolist()
    assert [r["split"] for r in rows[:10]] == ["train"] * 8 + ["val", "test"]

    text = cnnexp("predict", f"run={run}", "image=olivetti")
    wrong = sum(not r["correct"] for r in rows)
    assert text.out.startswith(f"olivetti (embedded GIF): 400 faces, {400 - wrong} correct")
    first_wrong = next(r for r in rows if not r["correct"])
    assert any(line.split()[:2] == [str(first_wrong["index"]), first_wrong["true"]] for line in text.out.splitlines())


def test_undecodable_images(cnnexp, run, images):
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = cnnexp("predict", f"run={run}", "image=images/broken.jpg")
    assert result.code == 2 and result.err.startswith("error: cannot decode images/broken.jpg as an image")
    assert len(result.err.strip().splitlines()) == 1

    folder = cnnexp("predict", f"run={run}", "image=images")
    assert folder.code == 0
    assert "skipped: cannot decode images/broken.jpg" in folder.err
    assert "skipped 1 of 4 files that could not be decoded" in folder.err
    assert "images/face.png" in folder.out


@pytest.mark.parametrize("args, message", [
    (("image=missing.png",), "image=missing.png does not exist"),
    (("image=nothing/*.png",), "matches no files"),
    ((), "say which images: image="),
    (("image=[]",), "say which images: image=<file, folder or glob>, image=[a.jpg,b.jpg]"),
    (("image=[missing.png,other.png]",), "image=missing.png does not exist"),
    (("image={a:b}",), "image={'a': 'b'} is not a file, folder or glob; name several as image=[a.jpg,b.jpg]"),
    (("image=olivetti", "topk=0"), "topk=0 must be an integer >= 1"),
    (("image=olivetti", "--tencrop", "which=nope"), "which=nope is not one of: best, last"),
])
def test_bad_input(cnnexp, run, workdir, args, message, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("scratch")))  # others' runs aside
    before = set(Path(tempfile.gettempdir()).glob("cnnexp-*"))
    result = cnnexp("predict", f"run={run}", *args)
    assert result.code == 2 and result.err.startswith("error: ") and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert list(workdir.iterdir()) == []
    assert set(Path(tempfile.gettempdir()).glob("cnnexp-*")) == before  # the scratch folder is gone too


def test_tencrop_prediction(cnnexp, run, images):
    result = cnnexp("predict", f"run={run}", "image=images/face.png", "--tencrop", "--json")
    assert result.code == 0, result.err
    x = torch.from_numpy(FACES[57:58]).float().div(255).unsqueeze(1)
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    model = create_model("lenet", ckpt["input_shape"], 40, **model_kwargs(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    views = [x[..., t : t + 52, l : l + 42] for t, l in [(0, 0), (0, 5), (5, 0), (5, 5), (2, 2)]]
    with torch.no_grad():
        mean = torch.stack([model.eval()(v).softmax(1) for v in views + [v.flip(3) for v in views]]).mean(0)[0]
    top = json.loads(result.out)["top"]
    assert top[0]["label"] == f"person_{mean.argmax().item():02d}"
    assert top[0]["prob"] == pytest.approx(mean.max().item(), abs=1e-4)


# ---- named runs: run={faces:<run>,gender:<run>} ----------------------------------------------------
def json_rows(result) -> dict:
    assert result.code == 0, result.err
    return {Path(row["image"]).name: row for row in map(json.loads, result.out.strip().splitlines())}


@pytest.mark.parametrize("face", [True, False], ids=["detect_face", "whole image"])
def test_named_runs_answer_as_each_run_alone(cnnexp, run, gender_run, images, face):
    """A grey LeNet on 52x42 crops and a colour CNN on 32x32: each name's guesses are those the run
    gives alone; with detect_face the one face box, and `face: null` + reason without a face."""
    photo_with_face(images / "utk.jpg")
    extra = ("detect_face=true",) if face else ()
    named = json_rows(cnnexp("predict", f"run={{faces:{run},gender:{gender_run}}}", "image=images", "topk=3",
                             "--json", *extra))
    alone = {name: json_rows(cnnexp("predict", f"run={folder}", "image=images", "topk=3", "--json", *extra))
             for name, folder in (("faces", run), ("gender", gender_run))}
    assert list(named) == ["blank.png", "face.png", "pasted.jpg", "utk.jpg"]
    found = [name for name in named if not face or alone["faces"][name]["face"] is not None]
    assert found == (["pasted.jpg", "utk.jpg"] if face else list(named))
    for image in found:
        row = named[image]
        assert list(row) == ["image", *(["face"] if face else []), "faces", "gender"]
        for name in ("faces", "gender"):
            assert row[name] == {"top": alone[name][image]["top"]}
            assert row.get("face") == alone[name][image].get("face")
    if face:
        assert named["blank.png"] == {"image": "images/blank.png", "face": None, "reason": "no face found"}


def test_named_runs_answer_a_list_of_files(cnnexp, run, gender_run, images):
    rows = json_rows(cnnexp("predict", f"run={{faces:{run},gender:{gender_run}}}",
                            "image=[images/pasted.jpg,images/face.png]", "--json"))
    assert list(rows) == ["pasted.jpg", "face.png"]
    assert all(set(row) == {"image", "faces", "gender"} for row in rows.values())


def test_named_runs_table(cnnexp, run, gender_run, images):
    photo_with_face(images / "utk.jpg")
    result = cnnexp("predict", f"run={{faces:{run},gender:{gender_run}}}", "image=images/*.*", "detect_face=true")
    assert result.code == 0, result.err
    header, *lines = result.out.splitlines()
    assert header.split() == ["image", "face", "(x", "y", "w", "h)", "faces", "gender"]
    rows = {line.split()[0]: line for line in lines}
    assert "no face found" in rows["images/blank.png"] and "person_" not in rows["images/blank.png"]
    assert "person_" in rows["images/utk.jpg"] and (" F 0." in rows["images/utk.jpg"] or " M 0." in rows["images/utk.jpg"])


@pytest.mark.parametrize("named, image, message", [
    ("{faces:RUN,gender:MISSING}", "images", "run.gender=MISSING is not a folder; give a train run folder such as "
                                             "outputs/train/<run>"),
    ("{faces:RUN,gender:RUN/checkpoints}", "images", "run.gender: RUN/checkpoints is not a cnnexp run folder "
                                                     "(no config.yaml); give outputs/train/<run>"),
    ("{}", "images", "run={} names no runs; give one run folder (run=outputs/train/<run>) or named runs"),
    ("{a-b:RUN}", "images", "run.a-b: 'a-b' cannot name a run; use letters, digits and _ starting with a letter"),
    ("{faces:RUN}", "olivetti", "image=olivetti checks one run; give run=<run folder>, or image files for named runs"),
], ids=["missing", "not a run", "empty", "bad name", "olivetti"])
def test_bad_named_runs_are_one_line_exit_2(cnnexp, run, images, named, image, message):
    def paths(text: str) -> str:
        return text.replace("RUN", str(run)).replace("MISSING", str(images.parent / "missing"))

    result = cnnexp("predict", f"run={paths(named)}", f"image={image}")
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1
    assert result.err.startswith(f"error: {paths(message)}"), result.err


def test_named_runs_unquoted_in_a_shell_get_the_quoting_hint(run, workdir):
    """bash expands run={faces:<run>,gender:<run>} into two arguments; the last wins and is not a folder."""
    proc = subprocess.run(["bash", "-c", f"{sys.executable} -m cnnexp predict run={{faces:{run},gender:{run}}} image=x"],
                          capture_output=True, text=True, timeout=120, cwd=workdir)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: run=gender:{run} is not a folder; quote named runs, 'run={{age:<run>,gender:<run>}}', "
                           "or the shell expands the braces into two arguments\n")
