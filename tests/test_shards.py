"""`cnnexp data build-shards` and `dataset=shards`: what is written, the epoch's order whatever the processes
and workers (two torchrun processes reach the weights of one; a killed run resumed reaches an uninterrupted
run's), and one line for a damaged shard, a shard without labels and a shard changed during training."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from conftest import only_run, slow_writes
from test_distributed import assert_same_weights, env, weights
from test_elastic import TORCHRUN

PEOPLE = 10  # Olivetti faces of 10 people: 80 train / 10 val / 10 test
# The DDP test's job (tests/test_distributed.py) on these shards. (With model=lenet's default 500 hidden units
# at lr 0.05 the loss climbs, and 1 and 2 processes part by ~5e-4 on dataset=folder in memory too.)
JOB = ("experiment=olivetti_lenet", "dataset=shards", "dataset.size=[57,47]", "trainer.batch_size=15",
       "trainer.shuffle=true", "optimizer.lr=0.05", "device=cpu",
       "device.threads=1", "trainer.log_every=3", "dataset.readers=4")
TIMEOUT = 240


def olivetti_folder(root: Path) -> Path:
    """The first PEOPLE people's faces as PNG files in one folder per person."""
    from PIL import Image

    from cnnexp.runner.compose import compose_config
    from cnnexp.data import create_dataset

    data = create_dataset(compose_config("train", ["dataset=olivetti"]).dataset, 0)
    for name, split in data.splits.items():
        for i, (image, label) in enumerate(zip(split.images, split.labels.tolist())):
            if label < PEOPLE:
                folder = root / f"p{label:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image[0].numpy()).save(folder / f"{name}{i:03d}.png")
    return root


def cli(cwd: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnexp", *args], cwd=cwd, env={**env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("shards")
    folder = olivetti_folder(base / "faces")
    proc = cli(base, "data", "build-shards", f"src={folder}", "out=built", "channels=1",
               "shard_size=20", "workers=0", "check=false")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 6 shards and shards.json" in proc.stdout
    return base / "built"


def test_build_writes_webdataset_shards_and_their_index(shards):
    meta = json.loads((shards / "shards.json").read_text())
    assert meta["classes"] == [f"p{i:02d}" for i in range(PEOPLE)] and meta["size"] is None  # the PNG files as they are
    assert {k: v["count"] for k, v in meta["splits"].items()} == {"train": 80, "val": 10, "test": 10}
    assert [s["name"] for s in meta["splits"]["train"]["shards"]] == [f"train-00000{i}.tar" for i in range(4)]
    assert meta["splits"]["train"]["class_counts"] == [8] * PEOPLE
    with tarfile.open(shards / "train-000000.tar") as tar:
        names = tar.getnames()
        label = int(tar.extractfile("000000000.cls").read())
    assert sorted(names[:2]) == ["000000000.cls", "000000000.png"] and len(names) == 40
    assert label == meta["splits"]["train"]["shards"][0]["labels"][0]


def test_build_refuses_a_folder_that_is_not_empty(shards):
    proc = cli(shards.parent, "data", "build-shards", "src=faces", "out=built", "size=32")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"out={shards} already exists and is not an empty folder" in proc.stderr


def dataset(path: Path, **keys):
    from cnnexp.runner.compose import compose_config
    from cnnexp.data import create_dataset

    cfg = compose_config("train", ["dataset=shards", f"dataset.path={path}", "dataset.workers=0", "dataset.size=[57,47]",
                                   *(f"dataset.{k}={v}" for k, v in keys.items())])
    return create_dataset(cfg.dataset, 0)


def epoch(batches, order, start: int = 0) -> list[tuple]:
    return [(images.clone(), labels.clone()) for images, labels in batches.iterate(order, start)]


def test_the_epochs_batches_are_the_same_whatever_the_processes_and_workers(shards):
    from cnnexp.data.shards import ShardBatches

    split = dataset(shards, readers=4, shuffle_buffer=7).split("train")
    one = ShardBatches(split, 15, shuffle=True)
    order = one.order(torch.Generator().manual_seed(3))
    whole = epoch(one, order)
    assert [len(labels) for _, labels in whole] == [one.global_size(k) for k in range(len(one))] == [15] * 5 + [5]
    assert sorted(torch.cat([labels for _, labels in whole]).tolist()) == sorted(split.labels.tolist())
    parts = [epoch(ShardBatches(split, 15, True, shard=(rank, 2)), order) for rank in range(2)]
    split.images.workers = 2
    with_workers = epoch(ShardBatches(split, 15, True), order)
    for k, (images, labels) in enumerate(whole):
        both = torch.cat([parts[0][k][0], parts[1][k][0]])
        assert sorted(map(bytes, both.flatten(1).numpy())) == sorted(map(bytes, images.flatten(1).numpy()))
        assert torch.equal(with_workers[k][0], images) and torch.equal(with_workers[k][1], labels)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch(one, order, start=4), whole[4:]))  # a resumed epoch
    assert not torch.equal(one.order(torch.Generator().manual_seed(4)), order)


def train(cwd: Path, processes: int, shards: Path, *args: str) -> Path:
    launcher = [sys.executable] if processes == 1 else [*TORCHRUN, "--standalone", f"--nproc_per_node={processes}"]
    run_dir = cwd / f"run{processes}"
    proc = subprocess.run([*launcher, "-m", "cnnexp", "train", *JOB, f"dataset.path={shards}", *args,
                           f"hydra.run.dir={run_dir}"], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_two_processes_on_shards_reach_the_weights_of_one(shards, tmp_path):
    one = weights(train(tmp_path, 1, shards, "trainer.epochs=2", "dataset.workers=2"))
    two = weights(train(tmp_path, 2, shards, "trainer.epochs=2", "dataset.workers=1"))
    assert one["step"] == two["step"] == 12 and two["world_size"] == 2
    assert_same_weights(one, two)


def test_a_killed_run_resumed_mid_epoch_reaches_the_uninterrupted_weights(shards, tmp_path):
    whole = weights(train(tmp_path, 1, shards, "trainer.epochs=2"))
    folder = tmp_path / "killed"
    args = ["train", *JOB, f"dataset.path={shards}", "trainer.epochs=2",
            "trainer.checkpoint_every=2", f"hydra.run.dir={folder}"]
    proc = subprocess.Popen([sys.executable, "-m", "cnnexp", *args], cwd=tmp_path, env={**env(), **slow_writes(1)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "checkpoints" / "last.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate()
    kept = weights(folder)
    assert kept["train_state"]["batch_in_epoch"] > 0  # killed in the middle of an epoch
    resumed = cli(tmp_path, *args[:-1], f"trainer.resume={folder}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    continued = weights(only_run(tmp_path / "outputs" / "train"))  # resume continues into a new run folder
    assert continued["step"] == whole["step"] == 12
    assert_same_weights(continued, whole)


def copy_shards(shards: Path, to: Path) -> Path:
    to.mkdir()
    for path in shards.iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to


def test_a_damaged_shard_is_one_line_and_the_run_keeps_its_last_checkpoint(shards, tmp_path):
    broken = copy_shards(shards, tmp_path / "broken")
    data = (broken / "train-000003.tar").read_bytes()
    (broken / "train-000003.tar").write_bytes(data[: len(data) // 3])
    proc = cli(tmp_path, "train", *JOB, f"dataset.path={broken}", "trainer.epochs=1",
               "trainer.shuffle=false", "dataset.readers=1", "dataset.shuffle_buffer=10", "trainer.checkpoint_every=1",
               "hydra.run.dir=run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"shard {broken / 'train-000003.tar'} is damaged" in error[0], proc.stderr
    assert "rebuild the shards with `cnnexp data build-shards`" in error[0]
    assert weights(tmp_path / "run")["step"] >= 3  # the steps before the damage are kept in last.pt


def rewrite(shard: Path, keep) -> None:
    """The shard again, with only the members `keep(name)` allows."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if keep(m.name)]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))


@pytest.mark.parametrize("change, message", [
    (lambda name: not name.endswith(".cls"), "has no label for sample 000000000 (no 000000000.cls)"),
    (lambda name: not name.startswith("00000000"), "holds 10 samples, but shards.json counts 20"),
])
def test_a_shard_without_labels_or_changed_is_one_line(shards, tmp_path, change, message):
    broken = copy_shards(shards, tmp_path / "broken")
    rewrite(broken / "train-000000.tar", change)
    proc = cli(tmp_path, "train", *JOB, f"dataset.path={broken}", "trainer.epochs=1",
               "trainer.shuffle=false", "hydra.run.dir=run")
    assert proc.returncode == 2
    assert proc.stderr.count("error:") == 1 and message in proc.stderr, proc.stderr[-2000:]


def test_no_shards_json_is_one_line(tmp_path):
    proc = cli(tmp_path, "train", "dataset=shards", f"dataset.path={tmp_path}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"no shards.json at {tmp_path / 'shards.json'}; build them with `cnnexp data build-shards" in proc.stderr
