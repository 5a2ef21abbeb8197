"""Data at scale: the folder index (checked once, re-checked where files changed), evaluation batches
sized to a memory budget, decoding into memory without a second copy."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnexp.data import create_dataset, index
from cnnexp.engine.evaluation import MAX_EVAL_BATCH, eval_batch_size
from cnnexp.models import create_model


def noise_folder(root, per_class=12, size=(30, 36)):
    """root/{cats,dogs}/<class>.<i>.jpg: small random photos."""
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / name / f"{name}.{i}.jpg")
    return root


def folder_cfg(root, **overrides):
    from cnnexp.schemas.datasets import source_config

    return source_config("folder", **{"root": str(root), "size": 16, "workers": 0, **overrides})


@pytest.fixture
def probed(monkeypatch):
    """The files checked (decoded) by the folder check, in the order checked (workers=0: in this process)."""
    seen = []
    real = index.probe

    def counting(path, max_pixels):
        seen.append(path.name)
        return real(path, max_pixels)

    monkeypatch.setattr(index, "probe", counting)
    return seen


def test_the_index_is_reused_and_refreshed_for_changed_and_added_files(tmp_path, probed):
    root = noise_folder(tmp_path / "photos")
    first = create_dataset(folder_cfg(root), seed=0)
    assert len(probed) == 24
    saved = json.loads(index.index_file(root, 50_000_000).read_text())["files"]
    assert saved["cats/cats.0.jpg"][2:] == [36, 30, None]  # width, height from the header; readable

    probed.clear()
    again = create_dataset(folder_cfg(root), seed=0)
    assert probed == []  # nothing decoded: every file was known
    assert again.splits["train"].paths == first.splits["train"].paths

    Image.new("RGB", (40, 20), "red").save(root / "dogs" / "dogs.3.jpg")  # changed
    (root / "cats" / "cats.new.jpg").write_bytes((root / "cats" / "cats.1.jpg").read_bytes())  # added
    (root / "cats" / "cats.5.jpg").unlink()  # gone
    probed.clear()
    create_dataset(folder_cfg(root), seed=0)
    assert sorted(probed) == ["cats.new.jpg", "dogs.3.jpg"]
    saved = json.loads(index.index_file(root, 50_000_000).read_text())["files"]
    assert saved["dogs/dogs.3.jpg"][2:4] == [40, 20] and "cats/cats.5.jpg" not in saved


def test_a_damaged_file_is_counted_once_and_remembered(tmp_path, probed, capsys):
    root = noise_folder(tmp_path / "photos")
    good = (root / "cats" / "cats.2.jpg").read_bytes()
    (root / "cats" / "cats.2.jpg").write_bytes(good[: len(good) // 3])
    for _ in range(2):
        data = create_dataset(folder_cfg(root), seed=0)
        assert sum(map(len, data.splits.values())) == 23
        assert "warning: skipped 1 unreadable or non-image file" in capsys.readouterr().err
    assert probed.count("cats.2.jpg") == 1  # the second run knew it from the index


def test_check_false_reads_nothing_up_front(tmp_path, probed):
    root = noise_folder(tmp_path / "photos")
    data = create_dataset(folder_cfg(root, check=False, in_memory=False), seed=0)
    assert probed == [] and not index.index_file(root, 50_000_000).exists()
    assert sum(map(len, data.splits.values())) == 24


def test_check_false_skips_unreadable_files_in_every_split_and_reports_them_at_the_end(tmp_path):
    """Without the check a damaged file is found by the stream that meets it, training or a validation or
    test evaluation: skipped (its label with it), counted once however many epochs and evaluations meet
    it, and reported when the run ends; the run completes and its errors count only the readable images."""
    root = tmp_path / "photos"
    for split, per_class in (("train", 20), ("validation", 4), ("test", 4)):
        noise_folder(root / split, per_class)
    (root / "train" / "cats" / "cats.0.jpg").write_bytes(b"not a photo")
    good = (root / "validation" / "dogs" / "dogs.1.jpg").read_bytes()
    (root / "validation" / "dogs" / "dogs.1.jpg").write_bytes(good[: len(good) // 3])  # a truncated JPEG
    (root / "test" / "cats" / "cats.2.jpg").write_bytes(good[:40])
    (root / "test" / "dogs" / "dogs.3.jpg").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "cnnexp", "train", "dataset=folder", f"dataset.root={root}",
                           "dataset.size=16", "dataset.check=false", "dataset.in_memory=false", "dataset.workers=1",
                           "model=small_cnn", "model.widths=[4,8]", "trainer.epochs=2", "trainer.eval_batch_size=3",
                           "trainer.batch_size=8", "device=cpu", "hydra.run.dir=run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warning) == 1, proc.stderr
    assert "skipped 4 unreadable files during the run (1 train, 1 val, 2 test; first:" in warning[0]
    assert "cats.0.jpg" in warning[0] and "dataset.check=true finds them before training starts" in warning[0]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_files"] == 4 and metrics["skipped_by_split"] == {"train": 1, "val": 1, "test": 2}
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    for line in history[1:]:  # errors are fractions of the 7 readable validation images, the 6 test images
        row = dict(zip(header, line.split(",")))
        assert round(float(row["val_error"]) * 7, 6).is_integer(), row
        if row["test_error"]:
            assert round(float(row["test_error"]) * 6, 6).is_integer(), row


def test_a_damaged_index_is_rebuilt(tmp_path, probed):
    root = noise_folder(tmp_path / "photos", per_class=3)
    create_dataset(folder_cfg(root), seed=0)
    index.index_file(root, 50_000_000).write_text("{not json")
    probed.clear()
    create_dataset(folder_cfg(root), seed=0)
    assert len(probed) == 6


def test_eval_batch_follows_the_budget_unless_given():
    model = create_model("small_cnn", (3, 224, 224), 2)
    small, double = (eval_batch_size(None, budget, model, (3, 224, 224), (3, 224, 224)) for budget in (64, 128))
    assert 1 <= small < MAX_EVAL_BATCH and abs(double - 2 * small) <= 1
    assert eval_batch_size(None, 512, model, (3, 256, 256), (3, 224, 224)) < eval_batch_size(
        None, 512, model, (3, 224, 224), (3, 224, 224))  # bigger stored images take more room
    assert eval_batch_size(None, 512, create_model("small_cnn", (3, 8, 8), 2), (3, 8, 8), (3, 8, 8)) == MAX_EVAL_BATCH
    assert eval_batch_size(7, 1, model, (3, 224, 224), (3, 224, 224)) == 7
    assert model.training  # the sizing pass leaves the model as it found it


PEAK_SCRIPT = """
import sys
from pathlib import Path
from cnnexp.data import create_dataset
from cnnexp.schemas.datasets import source_config

def kb(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1])

def decoded_at(size):
    cfg = source_config("folder", root=sys.argv[1], size=size, workers=0, in_memory=True, check=False)
    return create_dataset(cfg, seed=0)

decoded_at(4)  # everything decoding needs imported and set up
before = kb("VmRSS")
data = decoded_at(256)
decoded = sum(split.images.numel() for split in data.splits.values())
print(decoded, (kb("VmHWM") - before) * 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak memory from /proc")
def test_decoding_into_memory_holds_the_images_once(tmp_path):
    """The peak memory added by decoding a folder into memory stays near the decoded size (collecting
    the images in a list and then stacking them needed twice that)."""
    root = noise_folder(tmp_path / "photos", per_class=150, size=(64, 64))
    run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(root)], capture_output=True, text=True, check=True)
    decoded, added = map(int, run.stdout.split())
    assert decoded == 300 * 3 * 256 * 256
    assert added < 1.4 * decoded, f"decoding {decoded / 2**20:.0f} MB raised the peak by {added / 2**20:.0f} MB"
