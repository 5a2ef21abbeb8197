"""Faults lose nothing: SIGINT/SIGTERM, SIGKILL at random moments (inside checkpoint writes too),
exploding losses, truncated checkpoints, changed schedules on resume, racing sweeps, a full disk.

Every fault is injected into a real `cnnexp` process; the figures (kills injected, resumes that
matched, checkpoint loads attempted) are printed (`pytest -s` shows them)."""

import csv
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import only_run, read_json, slow_writes

from cnnexp.utils.checkpoint import Checkpoint
from cnnexp.utils.errors import UserError

# a small, fast run that still uses every random state a checkpoint must carry (shuffle, dropout,
# augmentation) and a scheduler and momentum; 8 steps an epoch, last.pt every 3 steps
TINY = ("model.nkerns=[4,8]", "model.hidden=50", "model.dropout=0.5", "augmentation=patch", "optimizer=momentum",
        "scheduler=staircase", "scheduler.step_size=2", "trainer.batch_size=40", "trainer.checkpoint_every=3",
        "device=cpu", "device.threads=1")
TIMING = ("train_seconds", "images_per_second")


def start(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`cnnexp <args>` as a child process of its own (signals reach it alone)."""
    environment = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "cnnexp", *args], cwd=workdir, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def history_rows(run: Path) -> list[dict]:
    with open(run / "history.csv") as f:
        return [{k: v for k, v in row.items() if k != "images_per_second"} for row in csv.DictReader(f)]


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def assert_same_run(run: Path, reference: Path) -> None:
    """Same final weights, optimizer state, history and metrics (timings aside) as the reference run."""
    mine, theirs = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (run, reference))
    for key, tensor in theirs["model"].items():
        assert torch.equal(mine["model"][key], tensor), key
    assert history_rows(run) == history_rows(reference)
    assert without_timing(read_json(run / "metrics.json")) == without_timing(read_json(reference / "metrics.json"))
    best = [torch.load(r / "checkpoints" / "best.pt", weights_only=True) for r in (run, reference)]
    assert best[0]["step"] == best[1]["step"]
    assert all(torch.equal(best[0]["model"][k], v) for k, v in best[1]["model"].items())


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted runs of TINY, by epoch count, made once for the module."""
    folder, runs = tmp_path_factory.mktemp("reference"), {}

    def get(epochs: int) -> Path:
        if epochs not in runs:
            proc = start(folder, "train", *TINY, f"trainer.epochs={epochs}", f"hydra.run.dir=ref{epochs}")
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            runs[epochs] = folder / f"ref{epochs}"
        return runs[epochs]

    return get


# ---- SIGINT / SIGTERM ------------------------------------------------------------------------------

def resume_command(stderr: str) -> list[str]:
    line = stderr.strip().splitlines()[-1]
    assert "resume with: " in line, stderr
    return shlex.split(line.split("resume with: ", 1)[1])


def interrupt_after_first_epoch(workdir: Path, signum: int, epochs: int) -> subprocess.CompletedProcess:
    proc = start(workdir, "train", *TINY, f"trainer.epochs={epochs}", "hydra.run.dir=stopped")
    wait_for(lambda: (workdir / "stopped" / "history.csv").exists()
             and len((workdir / "stopped" / "history.csv").read_text().splitlines()) >= 2, what="epoch 1")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigint_stops_at_a_step_saves_and_resumes_exactly(workdir, reference_runs):
    stopped = interrupt_after_first_epoch(workdir, signal.SIGINT, 8)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted by SIGINT after step" in stopped.stderr and "Traceback" not in stopped.stderr
    metrics = read_json(workdir / "stopped" / "metrics.json")
    assert metrics["interrupted"] is True and 1 <= metrics["epochs_run"] < 8
    ckpt = Checkpoint.read(workdir / "stopped")
    assert ckpt.step == metrics["steps"] >= 8

    command = resume_command(stopped.stderr)
    assert command[:2] == ["cnnexp", "train"]
    proc = start(workdir, *command[1:])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_run(only_run(workdir / "outputs" / "train"), reference_runs(8))
    print(f"\nSIGINT after step {ckpt.step}: resumed with the printed command, 1 of 1 resumes matched")


def test_sigterm_stops_with_143(workdir):
    stopped = interrupt_after_first_epoch(workdir, signal.SIGTERM, 200)
    assert stopped.returncode == 143, stopped.stderr
    assert "interrupted by SIGTERM" in stopped.stderr and "Traceback" not in stopped.stderr
    assert read_json(workdir / "stopped" / "metrics.json")["interrupted"] is True
    assert Checkpoint.read(workdir / "stopped").step >= 8


def test_second_ctrl_c_exits_at_once_leaving_complete_checkpoints(workdir):
    """The first Ctrl-C makes the trainer write last.pt (slowed to 4 s here); a second one during that
    write exits at once, and every checkpoint on disk still loads."""
    proc = start(workdir, "train", *TINY, "trainer.epochs=50", "hydra.run.dir=run", env=slow_writes(4))
    wait_for(lambda: (workdir / "run" / "history.csv").exists(), what="training to start")
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: (workdir / "run" / "checkpoints" / ".last.pt.tmp").exists(), timeout=30, what="the write")
    time.sleep(0.5)
    second = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - second < 2.0, "the second Ctrl-C did not exit at once"
    assert proc.returncode == 130 and "SIGINT again: exiting at once" in err, err
    for path in (workdir / "run" / "checkpoints").glob("*.pt"):
        Checkpoint.read(path)


# ---- exploding loss --------------------------------------------------------------------------------

def test_finite_exploding_loss_is_diverged(cnnexp, workdir):
    result = cnnexp("train", *TINY, "trainer.epochs=5", "optimizer.lr=5", "trainer.diverge_loss=20",
                    "hydra.run.dir=run")
    assert result.code == 3, result.err
    line = result.err.strip()
    assert line.startswith("Model diverged with loss = ") and "(above trainer.diverge_loss=20)" in line, line
    assert float(line.split("loss = ")[1].split()[0]) > 20
    assert read_json(workdir / "run" / "metrics.json")["diverged"] is True


def test_diverge_loss_must_be_positive(cnnexp):
    result = cnnexp("train", "trainer.diverge_loss=-1")
    assert result.code == 2 and "trainer.diverge_loss=-1" in result.err


@pytest.mark.slow
def test_tutorial_lr_0_1_olivetti_is_reported_diverged(cnnexp, workdir):
    """The tutorial's lr 0.1 case: the loss climbs past 100 without becoming NaN."""
    result = cnnexp("train", "experiment=olivetti_lenet", "optimizer.lr=0.1", "trainer.epochs=40",
                    "device.threads=1", "hydra.run.dir=run")
    assert result.code == 3, result.err
    assert "(above trainer.diverge_loss=100)" in result.err
    print(f"\n{result.err.strip()}")


# ---- SIGKILL anywhere ------------------------------------------------------------------------------

class KillHarness:
    """Runs TINY, kills it with SIGKILL at random moments, resumes from the newest loadable last.pt,
    and meanwhile loads every last.pt/best.pt that exists, again and again."""

    def __init__(self, workdir: Path, epochs: int, kills: int, seed: int):
        self.workdir, self.epochs, self.kills_wanted = workdir, epochs, kills
        self.random = random.Random(seed)
        self.kills = self.inside_writes = self.loads = self.resumes = 0
        self.bad_loads: list[str] = []

    def poll_checkpoints(self) -> None:
        for path in self.workdir.glob("chain/*/checkpoints/*.pt"):
            self.loads += 1
            try:
                Checkpoint.read(path)
            except UserError as exc:
                self.bad_loads.append(str(exc))
            except FileNotFoundError:  # only a folder being set up; never a half file
                pass

    def run(self) -> Path:
        latest, attempt = None, 0
        while True:
            attempt += 1
            folder = self.workdir / "chain" / str(attempt)
            args = [f"trainer.resume={latest}"] if latest else [*TINY, f"trainer.epochs={self.epochs}"]
            slow = slow_writes(0.3) if self.kills < self.kills_wanted else {}  # the last run is not killed
            proc = start(self.workdir, "train", *args, f"hydra.run.dir={folder}", env=slow)
            if not slow or not self.kill_at_random(proc, folder):
                out, err = proc.communicate(timeout=600)
                assert proc.returncode == 0, err
                return folder
            if (folder / "checkpoints" / "last.pt").exists():
                latest = folder
                self.resumes += 1

    def kill_at_random(self, proc: subprocess.Popen, folder: Path) -> bool:
        """Most kills once training runs (so the run makes progress), some while the process starts;
        False when the run ended first."""
        if self.random.random() < 0.8:
            wait_for(lambda: (folder / "history.csv").exists() or proc.poll() is not None, what="training")
        deadline = time.monotonic() + self.random.uniform(0.05, 1.5)
        while time.monotonic() < deadline and proc.poll() is None:
            self.poll_checkpoints()
            time.sleep(0.01)
        if proc.poll() is not None:
            return False
        proc.kill()
        proc.communicate()
        self.kills += 1
        self.inside_writes += any((folder / "checkpoints").glob(".*.tmp"))
        self.poll_checkpoints()
        return True


def kill_and_resume(workdir: Path, reference: Path, epochs: int, kills: int) -> None:
    harness = KillHarness(workdir, epochs, kills, seed=kills)
    final = harness.run()
    assert harness.kills == kills, f"the run finished after {harness.kills} kills"
    assert not harness.bad_loads, harness.bad_loads[:3]
    assert_same_run(final, reference)
    print(f"\nkills injected: {harness.kills} ({harness.inside_writes} inside a checkpoint write); "
          f"resumes: {harness.resumes}, final run matched the uninterrupted one: 1 of 1; "
          f"checkpoint loads attempted during the kills: {harness.loads}, failed: {len(harness.bad_loads)}")


def test_sigkill_a_few_times_loses_nothing(workdir, reference_runs):
    kill_and_resume(workdir, reference_runs(8), epochs=8, kills=3)


@pytest.mark.slow
def test_sigkill_many_times_loses_nothing(workdir, reference_runs):
    kill_and_resume(workdir, reference_runs(16), epochs=16, kills=25)


# ---- resume with a changed schedule ---------------------------------------------------------------

COSINE = (*[a for a in TINY if not a.startswith("scheduler")], "scheduler=cosine")


def test_resume_refuses_to_stretch_a_cosine_schedule(cnnexp, workdir):
    assert cnnexp("train", *COSINE, "trainer.epochs=2", "hydra.run.dir=first").code == 0
    result = cnnexp("train", "trainer.resume=first", "trainer.epochs=4", "hydra.run.dir=longer")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "cosine schedule spans its 2 epochs" in result.err and "+scheduler.T_max=2" in result.err
    assert not (workdir / "longer" / "checkpoints").exists()


def test_resume_with_the_old_cosine_length_given_continues_it_exactly(cnnexp, workdir):
    assert cnnexp("train", *COSINE, "trainer.epochs=3", "scheduler.T_max=2", "hydra.run.dir=straight").code == 0
    assert cnnexp("train", *COSINE, "trainer.epochs=2", "hydra.run.dir=first").code == 0
    result = cnnexp("train", "trainer.resume=first", "trainer.epochs=3", "+scheduler.T_max=2",
                    "hydra.run.dir=resumed")
    assert result.code == 0, result.err
    assert_same_run(workdir / "resumed", workdir / "straight")


def test_resume_refuses_a_changed_step_schedule(cnnexp, workdir):
    """A step schedule resumed with more epochs continues correctly (test_train's
    test_resume_gives_identical_weights); a change of its settings would be ignored, so it is refused."""
    assert cnnexp("train", *TINY, "trainer.epochs=1", "hydra.run.dir=first").code == 0
    result = cnnexp("train", "trainer.resume=first", "trainer.epochs=3", "+scheduler.step_size=1")
    assert result.code == 2 and "scheduler.step_size=1 differs from the resumed run's 2" in result.err, result.err


# ---- damaged checkpoints ---------------------------------------------------------------------------

@pytest.mark.parametrize("hard_links", [True, False])
def test_best_pt_written_with_last_pt_keeps_its_content_when_last_pt_is_replaced(tmp_path, monkeypatch, hard_links):
    """best.pt saved with an epoch's last.pt is a hard link to it (a copy where the filesystem refuses
    links); the next last.pt replaces the name, never the file best.pt shares."""
    from cnnexp.utils.checkpoint import save_atomic

    if not hard_links:
        def no_links(*args, **kwargs):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_links)
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_atomic({"step": 8}, last, also=(best,))
    assert os.path.samefile(last, best) == hard_links
    save_atomic({"step": 16}, last)
    assert torch.load(best, weights_only=True) == {"step": 8}
    assert torch.load(last, weights_only=True) == {"step": 16}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


def truncation_offsets(size: int) -> list[int]:
    """The first bytes, every 1/20 of the file, and the last bytes."""
    edges = [0, 1, 2, 3, 8, 64, 512, size - 512, size - 64, size - 8, size - 3, size - 2, size - 1]
    return sorted({o for o in edges + [size * k // 20 for k in range(1, 20)] if 0 <= o < size})


def test_checkpoint_truncated_at_any_offset_is_refused(reference_runs, tmp_path):
    whole = (reference_runs(8) / "checkpoints" / "last.pt").read_bytes()
    offsets, not_refused = truncation_offsets(len(whole)), []
    for offset in offsets:
        path = tmp_path / f"cut{offset}.pt"
        path.write_bytes(whole[:offset])
        try:
            Checkpoint.read(path)
            not_refused.append(offset)
        except UserError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        path.unlink()
    print(f"\ntruncated checkpoints: {len(offsets)} offsets of {len(whole)} bytes tried, "
          f"not refused: {not_refused or 'none'}")
    assert not_refused == []


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_truncated_checkpoint_is_one_line_for_eval_predict_and_resume(cnnexp, workdir, reference_runs, where):
    run = reference_runs(8)
    whole = (run / "checkpoints" / "last.pt").read_bytes()
    offset = {"start": 10, "middle": len(whole) // 2, "end": len(whole) - 1}[where]
    cut = workdir / "cut.pt"
    cut.write_bytes(whole[:offset])
    for args in (("eval", f"run={run}", f"checkpoint={cut}"), ("predict", f"run={run}", f"checkpoint={cut}",
                                                                  "image=olivetti"),
                 ("train", f"trainer.resume={cut}")):
        result = cnnexp(*args)
        assert result.code == 2, (args, result.err)
        assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1, result.err
        assert "cut.pt" in result.err and "truncated" in result.err


# ---- damaged inputs during a run -------------------------------------------------------------------

STREAMED = ("model=small_cnn", "model.widths=[4,8]", "trainer.batch_size=4", "trainer.epochs=200", "device=cpu",
            "device.threads=1", "dataset.in_memory=false", "dataset.workers=1", "hydra.run.dir=run")


def damage_during_run(workdir: Path, damage, *args: str) -> subprocess.CompletedProcess:
    """Start a streamed run, damage its data after the first epoch, and return how it ended."""
    proc = start(workdir, "train", *args, *STREAMED)
    history = workdir / "run" / "history.csv"
    wait_for(lambda: history.exists() and len(history.read_text().splitlines()) >= 2 or proc.poll() is not None,
             what="epoch 1")
    assert proc.poll() is None, proc.communicate()[1]
    damage()
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_stopped_naming(result: subprocess.CompletedProcess, name: str, run: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read ") and name in lines[0], result.stderr
    step = Checkpoint.read(run).step
    assert step >= 3 and f"last.pt of step {step} is kept: resume with cnnexp train trainer.resume=" in lines[0]


def test_hdf5_truncated_during_a_run_is_one_line_after_saving(cnnexp, workdir):
    from test_folder import photo_folder

    photo_folder(workdir / "photos", per_class=12)
    assert cnnexp("data", "build-hdf5", "src=photos", "out=small.h5", "size=24", "split=[0.5,0.25,0.25]",
                  "workers=0").code == 0
    h5 = workdir / "small.h5"
    result = damage_during_run(workdir, lambda: os.truncate(h5, 4096),
                               "dataset=hdf5", "dataset.path=small.h5")
    assert_stopped_naming(result, str(h5.name), workdir / "run")


def test_image_folder_damaged_during_a_run_is_one_line_after_saving(workdir):
    from test_folder import photo_folder

    photos = workdir / "photos"
    photo_folder(photos, per_class=12)

    def garble():
        for path in photos.rglob("*.jpg"):
            path.write_bytes(b"\xff\xd8 garbage, not a JPEG any more" * 4)

    result = damage_during_run(workdir, garble, "dataset=folder", "dataset.root=photos", "dataset.size=24")
    assert_stopped_naming(result, "photos", workdir / "run")


# ---- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(workdir):
    """A 4 MiB tmpfs at workdir/disk (skipped where this process may not mount one)."""
    disk = workdir / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'mount failed'}); "
                    "the full-disk test needs root or CAP_SYS_ADMIN")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_full_disk_stops_with_one_line_and_keeps_the_checkpoints(small_disk):
    run = small_disk / "run"
    proc = start(small_disk.parent, "train", *TINY, "trainer.epochs=200", f"hydra.run.dir={run}")
    wait_for(lambda: (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "last.pt").exists()
             or proc.poll() is not None, what="the first checkpoints")
    fill(small_disk)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(run) in lines[0], err
    assert "No space left on device" in lines[0] and "is kept: resume with" in lines[0]
    for which in ("last", "best"):
        Checkpoint.read(run, which)
    print(f"\nfull disk: {lines[0]}")


@pytest.mark.parametrize("writer", ["history", "tensorboard"])
def test_full_disk_in_history_or_tensorboard_is_one_line(cnnexp, workdir, monkeypatch, writer):
    """Where the first write to fail is history.csv or the TensorBoard log (simulated: on a real full
    disk the checkpoint is usually first, above)."""
    import errno

    from cnnexp.engine import loggers

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {"history": (loggers.HistoryCSV, "append"), "tensorboard": (loggers.TensorBoardLogger, "scalars")}
    monkeypatch.setattr(*target[writer], no_space)
    result = cnnexp("train", *TINY, "trainer.epochs=2", "hydra.run.dir=run")
    assert result.code == 2, result.err
    line = result.err.strip()
    assert line.startswith(f"error: no space left for the run folder {workdir / 'run'} (No space left on device); ") \
        and "\n" not in line, line


# ---- races -----------------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from cnnexp.utils.files import exclusive_lock
with exclusive_lock(Path(sys.argv[1])) as mine:
    print(mine, flush=True)
    time.sleep(600)
"""


def test_run_lock_is_exclusive_and_released_when_its_holder_is_killed(tmp_path):
    from cnnexp.utils.files import exclusive_lock

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with exclusive_lock(tmp_path) as mine:
            assert mine is False
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(tmp_path) as mine:
        assert mine is True


CLAIM_AT = """
import sys, time
from cnnexp.utils.runs import claim_run_dir
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(claim_run_dir("outputs/train"))
"""


def test_runs_started_in_the_same_second_get_folders_of_their_own(workdir):
    at = str(int(time.time()) + 3.1)  # early in a second, so that all four claim within it
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_AT, at], cwd=workdir, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    folders = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert len(set(folders)) == 4 and all(Path(workdir, f).is_dir() for f in folders)
    assert len({Path(f).name[:19] for f in folders}) == 1, folders  # the same second


@pytest.mark.slow
def test_two_train_commands_at_once_get_two_run_folders(workdir):
    procs = [start(workdir, "train", *TINY, "trainer.epochs=1") for _ in range(2)]
    assert [p.communicate(timeout=300)[0] and p.returncode for p in procs] == [0, 0]
    runs = sorted((workdir / "outputs" / "train").iterdir())
    assert len(runs) == 2 and all((r / "metrics.json").exists() for r in runs)
    print(f"\ntwo trains at once: {[r.name for r in runs]}")


SWEEP = ("sweep", "optimizer.lr=0.05,0.02", "seeds=2", *TINY, "trainer.epochs=2")


def sweep_table(sweep_dir: Path) -> list[dict]:
    """summary.json's points without timings and folder names."""
    def run(entry: dict) -> dict:
        return {"seed": entry["seed"], "status": entry["status"], "metrics": without_timing(entry["metrics"])}

    points = read_json(sweep_dir / "summary.json")["points"]
    return [{k: v for k, v in p.items() if k not in TIMING and k != "runs"} | {"runs": list(map(run, p["runs"]))}
            for p in points]


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    proc = start(folder, *SWEEP, f"sweep.dir={folder / 'whole'}")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return folder / "whole"


@pytest.mark.slow
def test_sweep_killed_midway_and_run_again_ends_with_the_same_table(workdir, reference_sweep):
    sweep_dir, rng, kills = workdir / "killed", random.Random(0), 0
    for _ in range(3):
        proc = start(workdir, *SWEEP, f"sweep.dir={sweep_dir}")
        wait_for(lambda: any(sweep_dir.glob("*/checkpoints/last.pt")) or proc.poll() is not None, what="a run")
        time.sleep(rng.uniform(0.2, 3.0))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate()
    again = start(workdir, *SWEEP, f"sweep.dir={sweep_dir}")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert sweep_table(sweep_dir) == sweep_table(reference_sweep)
    assert all(p["unfinished"] == 0 and p["runs_ok"] == 2 for p in sweep_table(sweep_dir))
    print(f"\nsweep: {kills} kills, then the same table as the uninterrupted sweep")


@pytest.mark.slow
def test_two_sweeps_on_one_folder_train_each_run_once(workdir, reference_sweep):
    sweep_dir = workdir / "shared"
    procs = [start(workdir, *SWEEP, f"sweep.dir={sweep_dir}") for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    runs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
    assert len(runs) == 4 and not list(sweep_dir.glob("*/interrupted*"))
    trained = {run.name: sum(out.count(f"run folder: {run.relative_to(workdir)}\n") for out in outs) for run in runs}
    assert set(trained.values()) == {1}, trained
    skipped = sum(out.count("another process is training") for out in outs)
    subprocess.run([sys.executable, "-m", "cnnexp", "sweep", "summarize", f"dir={sweep_dir}"], cwd=workdir,
                   capture_output=True, check=True)
    assert sweep_table(sweep_dir) == sweep_table(reference_sweep)
    print(f"\ntwo sweeps at once: each of {len(runs)} runs trained once ({skipped} skipped as locked)")
