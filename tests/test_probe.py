"""cnnexp probe: the best C and the scores equal a direct scikit-learn run on the same arrays, the
saved probe reproduces predict_proba, `cnnexp predict` on a probe run, multirun over files, bad input."""

import json
import sys

import h5py
import numpy as np
import pytest
import torch
from conftest import MNIST_ROOT, need, read_json
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torchvision.datasets import MNIST

from cnnexp.cli import main
from cnnexp.features.probe import LinearProbe, load_probe

GRID = [0.001, 0.01, 0.1, 1.0]


@pytest.fixture(scope="module")
def mnist_features(tmp_path_factory):
    """Features of a randomly initialised LeNet (seed 0) for the first 300 images of each MNIST split."""
    path = tmp_path_factory.mktemp("features") / "mnist.h5"
    assert main(["features", "model=lenet", "model.hidden=64", "dataset=mnist", f"dataset.root={need(MNIST_ROOT, 'MNIST')}",
                 "dataset.limit=300", "device=cpu", f"out={path}"]) == 0
    return path


def arrays(path, split):
    with h5py.File(path) as f:
        return f[split]["features"][:], f[split]["labels"][:]


def probe_run(workdir):
    runs = sorted((workdir / "outputs" / "probe").iterdir())
    assert len(runs) == 1
    return runs[0]


def test_best_c_and_accuracy_equal_a_direct_scikit_learn_run(cnnexp, workdir, mnist_features):
    result = cnnexp("probe", f"features={mnist_features}", f"C={GRID}", "threads=1")
    assert result.code == 0, result.err
    run = probe_run(workdir)
    report = read_json(run / "probe.json")

    x, y = arrays(mnist_features, "train")
    test_x, test_y = arrays(mnist_features, "test")
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                          {"logisticregression__C": GRID}, cv=3, scoring="accuracy")
    with threadpool_limits(limits=1):
        search.fit(x, y)
    assert report["best_C"] == search.best_params_["logisticregression__C"]
    assert report["best_cv_accuracy"] == pytest.approx(search.best_score_, abs=1e-12)
    assert [r["mean"] for r in report["cv_scores"]] == pytest.approx(list(search.cv_results_["mean_test_score"]))
    assert report["accuracy"] == pytest.approx(search.score(test_x, test_y), abs=1e-12)
    assert report["n"] == 300 and report["n_fit"] == 300 and report["dim"] == 64
    assert report["rank5"] is not None and len(report["per_class"]) == 10

    # the saved probe (no pickle) gives predict_proba again, and the eval-style files are there
    probs = LinearProbe(load_probe(run / "probe.h5")[0])(torch.from_numpy(test_x)).softmax(1)
    np.testing.assert_allclose(probs.numpy(), search.predict_proba(test_x), atol=1e-6)
    for name in ("config.yaml", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "cv_scores.png"):
        assert (run / name).is_file()
    assert "best" in result.out and "probe" in result.out and "rank-5" in result.out


def test_predict_on_a_probe_run_is_features_then_probe(cnnexp, workdir, mnist_features):
    assert cnnexp("probe", f"features={mnist_features}", "C=[0.1]", "cv=2", "threads=1").code == 0
    run = probe_run(workdir)
    digits = MNIST(str(need(MNIST_ROOT, "MNIST")), train=False).data[:3].numpy()  # the first test images, as in the file
    for i, digit in enumerate(digits):
        Image.fromarray(digit).save(workdir / f"digit{i}.png")
    result = cnnexp("predict", f"run={run}", "image=digit*.png", "topk=2", "--json")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.splitlines()]
    test_x, _ = arrays(mnist_features, "test")
    probe = LinearProbe(load_probe(run / "probe.h5")[0])
    expected = probe(torch.from_numpy(test_x[:3])).softmax(1).topk(2)
    for row, values, indices in zip(rows, expected.values.tolist(), expected.indices.tolist()):
        assert [g["label"] for g in row["top"]] == [str(i) for i in indices]
        assert [g["prob"] for g in row["top"]] == pytest.approx(values, abs=1e-4)


def test_serve_on_a_probe_run_answers_like_predict(cnnexp, workdir, mnist_features):
    from test_serve import Server

    assert cnnexp("probe", f"features={mnist_features}", "C=[0.1]", "cv=2", "threads=1").code == 0
    run = probe_run(workdir)
    digit = workdir / "digit.png"
    Image.fromarray(MNIST(str(need(MNIST_ROOT, "MNIST")), train=False).data[0].numpy()).save(digit)
    printed = cnnexp("predict", f"run={run}", f"image={digit}", "topk=3", "--json")
    assert printed.code == 0, printed.err
    server = Server(run, workdir / "serve.log", "topk=3")
    try:
        status, answer = server.request("POST", "/predict", digit.read_bytes(), {"Content-Type": "image/png"})
        info = server.request("GET", "/info")[1]
    finally:
        assert server.stop() == 0
    assert status == 200, answer
    served, expected = answer["images"][0]["top"], json.loads(printed.out)["top"]
    assert [g["label"] for g in served] == [g["label"] for g in expected]
    assert [g["prob"] for g in served] == pytest.approx([g["prob"] for g in expected], abs=1e-4)
    assert info["model"] == "probe on lenet" and info["checkpoint"].endswith("probe.h5")


def test_train_limit_cv_val_and_binary_probe(cnnexp, workdir, tmp_path):
    """A two-class file: a binary probe (one coefficient row) selected on val; train_limit subsamples."""
    rng = np.random.default_rng(0)
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "cnnexp-features", "model": "hand-made", "label_names": ["a", "b"]})
        for split, n in (("train", 60), ("val", 20), ("test", 20)):
            labels = np.arange(n) % 2
            f.create_dataset(f"{split}/features", data=(rng.normal(size=(n, 5)) + labels[:, None]).astype(np.float32))
            f.create_dataset(f"{split}/labels", data=labels)
    result = cnnexp("probe", f"features={path}", "cv=val", "train_limit=40", "scale=false", "threads=1")
    assert result.code == 0, result.err
    run = probe_run(workdir)
    report = read_json(run / "probe.json")
    assert report["n_fit"] == 60 and report["rank5"] is None  # 40 of train + 20 of val
    arrays_, _ = load_probe(run / "probe.h5")
    assert arrays_["coef"].shape == (1, 5)
    x, y = arrays(path, "test")
    probs = LinearProbe(arrays_)(torch.from_numpy(x)).softmax(1)
    assert 1 - report["error"] == pytest.approx((probs.argmax(1).numpy() == y).mean())


def test_multirun_compares_feature_files(cnnexp, workdir, mnist_features):
    other = workdir / "copy.h5"
    other.write_bytes(mnist_features.read_bytes())
    result = cnnexp("probe", "-m", f"features={mnist_features},{other}", "C=[0.1]", "cv=2", "threads=1")
    assert result.code == 0, result.err
    reports = sorted((workdir / "outputs" / "multirun").glob("*/*/probe.json"))
    assert len(reports) == 2
    first, second = (read_json(p) for p in reports)
    assert first["features"] != second["features"] and first["accuracy"] == second["accuracy"]


def write_file(path, splits: dict, names=("a", "b")):
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "cnnexp-features", "label_names": list(names)})
        for split, (features, labels) in splits.items():
            f.create_dataset(f"{split}/features", data=np.asarray(features, dtype=np.float32))
            f.create_dataset(f"{split}/labels", data=np.asarray(labels))


def bad_files(folder):
    two = (np.eye(6, 4), [0, 1] * 3)
    (folder / "text.h5").write_text("not hdf5\n")
    with h5py.File(folder / "empty.h5", "w") as f:
        f.attrs["format"] = "cnnexp-features"
    write_file(folder / "sizes.h5", {"train": two, "test": (np.eye(6, 5), [0, 1] * 3)})
    write_file(folder / "oneclass.h5", {"train": (np.eye(6, 4), [1] * 6), "test": two})
    write_file(folder / "notest.h5", {"train": two})
    write_file(folder / "badlabels.h5", {"train": (np.eye(6, 4), [0, 1, 2] * 2), "test": two})
    write_file(folder / "rare.h5", {"train": (np.eye(6, 4), [0] * 5 + [1]), "test": two})


@pytest.mark.parametrize("args, start, middle", [
    (("features=text.h5",), "error: ", "is not an HDF5 file"),
    (("features=empty.h5",), "error: ", "holds no split groups with features and labels"),
    (("features=sizes.h5",), "error: ", "the splits' features differ in size (train (6, 4), test (6, 5))"),
    (("features=oneclass.h5",), "error: ", "the train split holds one class only (b)"),
    (("features=notest.h5",), "error: ", "has no test split to score on"),
    (("features=badlabels.h5",), "error: ", "split train has labels outside 0..1 (label_names has 2)"),
    (("features=rare.h5",), "error: ", "class b has 1 image(s) to fit on, fewer than cv=3 folds"),
    (("features=missing.h5",), "error: features file", "not found"),
    ((), "error: say which features", ""),
    (("features=sizes.h5", "C=[0,1]"), "error: C=[0", "] must list positive numbers"),
    (("features=sizes.h5", "cv=five"), "error: cv='five' must be", ""),
    (("features=sizes.h5", "fit=all"), "error: fit=all is not one of", ""),
])
def test_bad_input_is_one_line_exit_2(cnnexp, workdir, args, start, middle):
    bad_files(workdir)
    result = cnnexp("probe", *args)
    assert result.code == 2 and result.err.startswith(start) and middle in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (workdir / "outputs" / "probe").exists() or not any((workdir / "outputs" / "probe").iterdir())


def test_missing_scikit_learn_is_one_line(cnnexp, workdir, mnist_features, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    result = cnnexp("probe", f"features={mnist_features}")
    assert result.code == 2 and 'pip install "cnnexp[probe]"' in result.err and "scikit-learn" in result.err
    assert len(result.err.strip().splitlines()) == 1
