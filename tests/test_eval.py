"""cnnexp eval: numbers equal a direct computation (plain and ten-crop), report files, options, bad input."""

import csv

import pytest
import torch
import torch.nn.functional as F
from conftest import read_json
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support

from cnnexp.cli import main
from cnnexp.data.sources.olivetti import embedded_gif, read_faces
from cnnexp.models import create_model, model_kwargs
from cnnexp.inference.scoring import Scores, confusion_matrix, per_class, summary

TINY = ("model.nkerns=[4,8]", "model.hidden=32", "trainer.epochs=2", "optimizer.lr=0.1", "trainer.batch_size=20")
CROP = (52, 42)  # of 57x47: corners at rows 0/5, columns 0/5; the centre at (2, 2)


@pytest.fixture(scope="module")
def crop_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "crop"
    assert main(["train", *TINY, "augmentation=patch", f"hydra.run.dir={run}"]) == 0
    return run


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "whole"
    assert main(["train", *TINY, "trainer.epochs=1", "dataset.limit=40", f"hydra.run.dir={run}"]) == 0
    return run


def rate(hits: torch.Tensor) -> float:
    return hits.sum().item() / len(hits)


def direct_model(run, which="best"):
    ckpt = torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)
    kwargs = model_kwargs(ckpt["config"]["model"])
    model = create_model("lenet", ckpt["input_shape"], 40, **kwargs)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def olivetti_test_split():
    """The tutorial's test split: each person's tenth face, scaled to [0, 1]."""
    faces = torch.from_numpy(read_faces(embedded_gif())).float().div(255).view(40, 10, 1, 57, 47)
    return faces[:, 9], torch.arange(40)


@torch.no_grad()
def hand_tencrop(model, x):
    """Softmax of each of the ten views, by explicit slicing."""
    (h, w), (ch, cw) = x.shape[-2:], CROP
    views = [x[..., t : t + ch, l : l + cw] for t, l in [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (2, 2)]]
    views += [torch.flip(v, dims=[3]) for v in views]
    return torch.stack([model(v).softmax(1) for v in views])


def test_tencrop_report_matches_direct_computation(cnnexp, crop_run):
    result = cnnexp("eval", f"run={crop_run}", "--tencrop")
    assert result.code == 0, result.err
    out = crop_run / "eval" / "test-tencrop"
    report = read_json(out / "eval.json")

    model = direct_model(crop_run)
    x, labels = olivetti_test_split()
    with torch.no_grad():
        logits = model(x[..., 2:54, 2:44])
    assert report["split"] == "test" and report["n"] == 40 and report["tencrop"] is True
    assert report["error"] == pytest.approx(rate(logits.argmax(1) != labels), abs=1e-9)
    assert report["accuracy"] == pytest.approx(1 - report["error"]) and report["rank1"] == report["accuracy"]
    top5 = logits.topk(5, 1).indices
    assert report["rank5"] == pytest.approx(rate((top5 == labels[:, None]).any(1)), abs=1e-9)
    assert report["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-4)

    mean = hand_tencrop(model, x).mean(0)
    assert report["tencrop_reduce"] == "mean" and report["tencrop_views"] == 10
    assert report["tencrop_error"] == pytest.approx(rate(mean.argmax(1) != labels), abs=1e-9)
    top5 = mean.topk(5, 1).indices
    assert report["tencrop_rank5"] == pytest.approx(rate((top5 == labels[:, None]).any(1)), abs=1e-9)
    assert report["tencrop_loss"] == pytest.approx(F.nll_loss(mean.log(), labels).item(), rel=1e-4)

    # side by side on the console, with the change in points
    assert "centre" in result.out and "ten-crop (mean)" in result.out and "change" in result.out
    change = f"{100 * (report['tencrop_error'] - report['error']):+.2f}"
    assert any(line.startswith("error") and line.rstrip().endswith(change) for line in result.out.splitlines())

    # the files, from the ten-crop predictions
    wrong = (mean.argmax(1) != labels).nonzero().flatten().tolist()
    assert [m["index"] for m in report["misclassified"]] == wrong
    assert all("file" not in m for m in report["misclassified"])  # the Olivetti faces come from one GIF
    listed = result.out.split(f"misclassified (ten-crop): {len(wrong)} of 40\n")[1].splitlines()
    for m, line in zip(report["misclassified"][:10], listed):
        assert line.split() == [f"#{m['index']}", m["true"], "->", m["predicted"], f"({m['prob']:.2f})"]
    with open(out / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == [f"person_{i:02d}" for i in range(40)]
    counts = torch.tensor([[int(v) for v in row[1:]] for row in rows[1:]])
    assert counts.sum() == 40 and counts.trace() == 40 - len(wrong)
    with open(out / "per_class.csv") as f:
        assert len(list(csv.DictReader(f))) == 40
    for name in ("confusion_matrix.png", "misclassified.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300


def test_vote_reduction(cnnexp, crop_run):
    assert cnnexp("eval", f"run={crop_run}", "--tencrop", "eval.tencrop_reduce=vote").code == 0
    report = read_json(crop_run / "eval" / "test-tencrop-vote" / "eval.json")
    x, labels = olivetti_test_split()
    probs = hand_tencrop(direct_model(crop_run), x)
    votes = F.one_hot(probs.argmax(2), 40).sum(0).float()
    predicted = (votes + probs.mean(0)).argmax(1)  # most votes; the mean softmax breaks ties
    assert report["tencrop_reduce"] == "vote"
    assert report["tencrop_error"] == pytest.approx(rate(predicted != labels), abs=1e-9)


def test_five_crops_without_mirrors(cnnexp, crop_run):
    result = cnnexp("eval", f"run={crop_run}", "--tencrop", "eval.tencrop_mirror=false")
    assert result.code == 0, result.err
    report = read_json(crop_run / "eval" / "test-fivecrop" / "eval.json")
    x, labels = olivetti_test_split()
    mean = hand_tencrop(direct_model(crop_run), x)[:5].mean(0)  # the first five views are the unmirrored ones
    assert report["tencrop_views"] == 5 and "five-crop (mean)" in result.out
    assert report["tencrop_error"] == pytest.approx(rate(mean.argmax(1) != labels), abs=1e-9)
    assert report["tencrop_loss"] == pytest.approx(F.nll_loss(mean.log(), labels).item(), rel=1e-4)


def test_plain_eval_of_other_split_and_checkpoint(cnnexp, crop_run):
    result = cnnexp("eval", f"run={crop_run}", "split=val", "which=last", "trainer.batch_size=7", "device=cpu")
    assert result.code == 0, result.err
    report = read_json(crop_run / "eval" / "val-last" / "eval.json")
    assert report["n"] == 40 and report["tencrop"] is False and "tencrop_error" not in report
    assert report["checkpoint"].endswith("last.pt") and report["predictions"] == "centre"
    faces = torch.from_numpy(read_faces(embedded_gif())).float().div(255).view(40, 10, 1, 57, 47)[:, 8]
    with torch.no_grad():
        logits = direct_model(crop_run, "last")(faces[..., 2:54, 2:44])
    assert report["error"] == pytest.approx(rate(logits.argmax(1) != torch.arange(40)), abs=1e-9)
    assert "ten-crop" not in result.out
    # unordered classes (people): no one-off accuracy, no subgroups
    assert "one_off" not in report and "ordered" not in report and "by" not in report
    assert "one-off" not in result.out and "accuracy (exact)" not in result.out


def test_dataset_overrides(cnnexp, crop_run, workdir):
    result = cnnexp("eval", f"run={crop_run}", f"dataset.root={embedded_gif()}", "dataset.limit=12")
    assert result.code == 0, result.err
    assert read_json(crop_run / "eval" / "test" / "eval.json")["n"] == 12

    missing = cnnexp("eval", f"run={crop_run}", "dataset.root=nowhere.gif", "split=train")
    assert missing.code == 2 and missing.err.startswith("error: Olivetti GIF not found at nowhere.gif")
    assert not (crop_run / "eval" / "train").exists()  # a failed eval leaves no folder


def test_standalone_checkpoint_file(cnnexp, crop_run, workdir):
    (workdir / "models").mkdir()
    (workdir / "models" / "faces.pt").write_bytes((crop_run / "checkpoints" / "best.pt").read_bytes())
    result = cnnexp("eval", "checkpoint=models/faces.pt")
    assert result.code == 0, result.err
    assert read_json(workdir / "models" / "eval" / "test-faces" / "eval.json")["n"] == 40


def test_tencrop_refused_for_whole_image_run(cnnexp, whole_run):
    result = cnnexp("eval", f"run={whole_run}", "--tencrop")
    assert result.code == 2
    assert result.err.startswith("error: ten-crop needs a run trained on crops") and "augmentation=patch" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (whole_run / "eval").exists()


@pytest.mark.parametrize("args, message", [
    (("run=no/such/run",), "run=no/such/run is not a folder"),
    ((), "say which model: run="),
    (("run=.", "split=dev"), "split=dev is not one of"),
    (("run=.",), "is not a cnnexp run folder"),
])
def test_bad_input_leaves_nothing(cnnexp, workdir, args, message):
    result = cnnexp("eval", *args)
    assert result.code == 2 and result.err.startswith("error: ") and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert list(workdir.iterdir()) == []


def test_rank5_only_with_more_than_five_classes():
    labels = torch.tensor([0, 1, 2, 3])
    probs = torch.tensor([[0.6, 0.1, 0.1, 0.1, 0.1], [0.5, 0.2, 0.1, 0.1, 0.1],
                          [0.1, 0.1, 0.7, 0.05, 0.05], [0.2, 0.2, 0.2, 0.1, 0.3]])
    numbers = summary(Scores(probs, 0.5), labels)
    assert numbers["rank5"] is None and numbers["error"] == pytest.approx(0.5)


def test_per_class_matches_sklearn():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (200,), generator=generator)
    predicted = torch.where(torch.rand(200, generator=generator) < 0.6, labels,
                            torch.randint(0, 6, (200,), generator=generator))
    predicted[predicted == 5] = 4  # class 5 is never predicted: precision 0 by convention
    rows = per_class(confusion_matrix(labels, predicted, 6), [str(i) for i in range(6)])
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(6),
                                                                     zero_division=0)
    assert [r["precision"] for r in rows] == pytest.approx(precision.tolist())
    assert [r["recall"] for r in rows] == pytest.approx(recall.tolist())
    assert [r["f1"] for r in rows] == pytest.approx(f1.tolist())
    assert [r["support"] for r in rows] == support.tolist()


def test_usage_lists_commands(cnnexp):
    result = cnnexp("--help")
    assert "eval " in result.out and "predict " in result.out


def test_a_narrow_grid_keeps_its_whole_title(tmp_path, monkeypatch):
    """One misclassified image makes a grid one picture wide: its title is folded onto lines that fit."""
    from cnnexp.inference import reports

    drawn = []
    monkeypatch.setattr(reports, "save_figure", lambda fig, path: drawn.append(fig))
    title = "small_cnn on folder test: 1 of 2 misclassified (ten-crop, last checkpoint)"
    reports.plot_image_grid(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ["cats.1.jpg"], tmp_path / "m.png", title)
    (fig,) = drawn
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert fig._suptitle.get_text().replace("\n", " ") == title
