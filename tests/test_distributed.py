"""Data-parallel training through torchrun (CPU, Gloo, 2 processes): the same weights as one process
of the same global batch, one run folder written by rank 0, resume across world sizes, and a killed
rank that ends the run instead of hanging it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import only_run, read_json

# LeNet has neither dropout nor BatchNorm; no augmentation. Batch 15 of 80 images: the shards of a
# batch are 8 + 7 images, and the last batch of each epoch (5 images) 3 + 2, so the weighting of
# unequal shards is exercised too.
JOB = ("experiment=olivetti_lenet", "dataset.limit=80", "trainer.batch_size=15",
       "trainer.shuffle=true", "optimizer.lr=0.05", "device=cpu", "device.threads=1", "trainer.log_every=3")
TORCHRUN = Path(sys.executable).with_name("torchrun")
TIMEOUT = 180


def env() -> dict:
    root = str(Path(__file__).resolve().parents[1])
    return {**{k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}


def train(cwd: Path, processes: int, *args: str, run_dir: Path | None = None) -> subprocess.CompletedProcess:
    launcher = [sys.executable] if processes == 1 else [
        str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}"]
    extra = [f"hydra.run.dir={run_dir}"] if run_dir is not None else []
    proc = subprocess.run([*launcher, "-m", "cnnexp", "train", *JOB, *args, *extra], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.allclose(a["model"][name], b["model"][name], atol=1e-5, rtol=0), name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One and two processes for 2 epochs, then each resumed to 3 epochs by the other world size."""
    base = tmp_path_factory.mktemp("ddp")
    found = {}
    train(base, 1, "trainer.epochs=2", run_dir=base / "one")
    found["two_out"] = train(base, 2, "trainer.epochs=2")  # the run folder as Hydra names it: outputs/train/<time>
    found["two"] = only_run(base / "outputs" / "train")
    train(base, 1, "trainer.epochs=3", f"trainer.resume={found['two']}", run_dir=base / "two_then_one")
    train(base, 2, "trainer.epochs=3", f"trainer.resume={base / 'one'}", run_dir=base / "one_then_two")
    found.update(base=base, one=base / "one", two_then_one=base / "two_then_one", one_then_two=base / "one_then_two")
    return found


def test_two_processes_reach_the_weights_of_one_process_of_the_same_global_batch(runs):
    one, two = weights(runs["one"]), weights(runs["two"])
    assert one["step"] == two["step"] == 12  # 6 global batches an epoch, not 6 per process
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert_same_weights(one, two)
    assert not any(k.startswith("module.") for k in two["model"])  # the unwrapped model is saved
    assert read_json(runs["one"] / "metrics.json")["best_val_error"] == pytest.approx(
        read_json(runs["two"] / "metrics.json")["best_val_error"], abs=1e-9)  # evaluation over all ranks


def test_one_run_folder_written_by_rank_0_alone(runs):
    run = runs["two"]
    assert [p.name for p in (runs["base"] / "outputs" / "train").iterdir()] == [run.name]
    logs = sorted(p.name for p in run.glob("*.log"))
    assert logs == ["train.log"]
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2  # header + one row per epoch: no rank wrote a second copy
    writers = {p.name.split(".")[-2] for p in run.glob("events.out.tfevents.*")}  # the writing process's pid
    assert len(writers) == 1
    out = runs["two_out"].stdout
    assert out.count("cnnexp train") == 1  # one summary table, printed by rank 0
    assert "2 (DDP, Gloo): global batch 15 = 7-8 images per process" in " ".join(out.split())


def test_resume_across_world_sizes_continues_exactly(runs):
    two_then_one, one_then_two = weights(runs["two_then_one"]), weights(runs["one_then_two"])
    assert two_then_one["step"] == one_then_two["step"] == 18  # one more epoch of 6 steps
    assert_same_weights(two_then_one, one_then_two)
    history = (runs["two_then_one"] / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]


def test_eval_reads_a_data_parallel_run_like_any_other(runs):
    proc = subprocess.run([sys.executable, "-m", "cnnexp", "eval", f"run={runs['two']}", "split=val"],
                          cwd=runs["base"], env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    best_val = read_json(runs["two"] / "metrics.json")["best_val_error"]
    assert f"{100 * best_val:.2f}" in proc.stdout


def test_the_step_loop_reads_the_loss_every_log_every_steps(tmp_path, monkeypatch):
    """One device-to-host read per trainer.log_every steps (and at evaluations and epoch ends, and at the
    run's first step for the progress bar), yet
    every step's loss is logged and checked, with its own step number."""
    from cnnexp.runner.compose import compose_config
    from cnnexp.data import create_dataset
    from cnnexp.engine.distributed import Group
    from cnnexp.engine.assemble import assemble_training
    from cnnexp.engine.trainer import Trainer

    reads = []
    gather = Group.gather_losses
    monkeypatch.setattr(Group, "gather_losses", lambda self, losses, stop: reads.append(len(losses))
                        or gather(self, losses, stop))
    job = [arg for arg in JOB if not arg.startswith("trainer.log_every")]
    cfg = compose_config("train", [*job, "trainer.epochs=2", "trainer.log_every=4"])
    data = create_dataset(cfg.dataset, 0).limit(80)
    trainer = Trainer(assemble_training(cfg, data), tmp_path)
    logged = []
    track = trainer._track_loss
    trainer._track_loss = lambda value, epoch, step: logged.append(step) or track(value, epoch, step)
    trainer.fit()
    assert reads == [1, 4, 1, 4, 2]  # 6 steps an epoch: the first step, then every 4 steps, the rest at the end
    assert logged == list(range(1, 13))


def rank_pids(launcher_pid: int) -> dict:
    """{rank: pid} of torchrun's worker processes."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        rank = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"RANK=")), None)
        if parent == launcher_pid and rank is not None:
            found[int(rank)] = int(proc.name)
    return found


def test_a_killed_rank_ends_the_run_with_an_error_not_a_hang(tmp_path):
    args = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "cnnexp", "train", *JOB,
            "trainer.epochs=1000", "trainer.ddp_timeout=20", f"hydra.run.dir={tmp_path / 'run'}"]
    launcher = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "run" / "checkpoints" / "last.pt").exists():  # both ranks are training
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-2000:]
            time.sleep(0.2)
        time.sleep(1)
        workers = rank_pids(launcher.pid)
        assert sorted(workers) == [0, 1]
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode != 0
    assert time.monotonic() - killed_at < 60
    assert not Path(f"/proc/{workers[0]}").exists()  # rank 0 ended too
    # rank 0's one line (torchrun then adds its own report of the killed rank)
    assert "another training process stopped or stopped answering (rank 0 of 2 saw: " in err
    assert "last.pt of step" in err and "is kept: resume with cnnexp train trainer.resume=" in err


def _two_rank_checks(rank: int, init_file: str, results) -> None:
    """In each of 2 spawned processes: BatchNorm running stats averaged, evaluation sharded exactly."""
    import torch.distributed as dist

    from cnnexp.data.image_data import Split
    from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline
    from cnnexp.schemas import AugmentationSchema
    from cnnexp.engine.distributed import Group
    from cnnexp.engine.evaluation import evaluate, evaluate_shard

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    group = Group()
    norm = torch.nn.BatchNorm1d(3)
    norm.running_mean.fill_(float(rank))  # rank 0: 0, rank 1: 1
    group.average_buffers(norm)
    torch.manual_seed(0)  # the same model and data on both ranks
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    split = Split(torch.randint(0, 256, (7, 1, 2, 2), dtype=torch.uint8), torch.randint(0, 3, (7,)))
    pipeline = Pipeline(Augmentation(AugmentationSchema(), (1, 2, 2)), Normalizer("scale", [0.0], [1.0]))
    results[rank] = (norm.running_mean.tolist(), evaluate_shard(model, split, pipeline, 2, group),
                     evaluate(model, split, pipeline, 2))
    dist.destroy_process_group()


def test_batchnorm_stats_are_averaged_and_evaluation_counts_every_image_once(tmp_path):
    import torch.multiprocessing as mp

    results = mp.Manager().dict()
    mp.spawn(_two_rank_checks, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
    for rank in (0, 1):
        running_mean, sharded, whole = results[rank]
        assert running_mean == [0.5, 0.5, 0.5]
        # 7 images in chunks of 2: rank 0 evaluates images 0-1 and 4-5, rank 1 images 2-3 and 6
        assert sharded == pytest.approx(whole, abs=1e-6)


@pytest.mark.parametrize("n, batch_size, world_size", [(7, 2, 2), (10, 3, 4), (2, 5, 3), (100, 10, 2)])
def test_evaluation_shards_cover_every_image_exactly_once(n, batch_size, world_size):
    from cnnexp.engine.distributed import shard_starts

    seen = [i for rank in range(world_size) for start in shard_starts(n, batch_size, rank, world_size)
            for i in range(start, min(start + batch_size, n))]
    assert sorted(seen) == list(range(n))
