"""Jobs that survive a lost process, and nodes that find each other: `trainer.resume=auto` continues a
fixed run folder's own last.pt; torchrun --max-restarts=1 restarts a job whose worker was SIGKILLed and
the job ends with the weights of an uninterrupted run; two torchrun launches with --nnodes=2 and the
c10d rendezvous play two nodes and reach the weights of one process."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_json, slow_writes
from test_distributed import JOB, assert_same_weights, env, rank_pids, weights

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # torchrun's own module: no script needed in the venv
EPOCHS = 4  # 6 global steps an epoch (80 images, batch 15)
TIMEOUT = 240


def run(cwd: Path, *command: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(command), cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def train_args(run_dir: Path, *args: str) -> list[str]:
    return ["-m", "cnnexp", "train", *JOB, f"trainer.epochs={EPOCHS}", *args, f"hydra.run.dir={run_dir}"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The job in one process, never stopped: the weights every other way of running it must reach."""
    base = tmp_path_factory.mktemp("uninterrupted")
    run(base, sys.executable, *train_args(base / "run"))
    return weights(base / "run")


def test_resume_auto_starts_continues_then_leaves_a_finished_run_alone(tmp_path, uninterrupted):
    folder = tmp_path / "run"
    first = run(tmp_path, sys.executable, *train_args(folder, "trainer.resume=auto", "trainer.epochs=2"))
    assert "continuing" not in first.stdout  # nothing to continue: a new run in the folder
    assert weights(folder)["step"] == 12
    (folder / "metrics.json").unlink()  # as if the job had been stopped after its second epoch's last.pt
    second = run(tmp_path, sys.executable, *train_args(folder, "trainer.resume=auto"))
    assert f"trainer.resume=auto: continuing {folder} from its last.pt" in second.stdout
    assert weights(folder)["step"] == 6 * EPOCHS
    assert_same_weights(weights(folder), uninterrupted)
    history = (folder / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == [str(e) for e in range(1, EPOCHS + 1)]
    third = run(tmp_path, sys.executable, *train_args(folder, "trainer.resume=auto"))  # a requeue after the end
    assert "holds a finished run (metrics.json); nothing to continue" in third.stdout
    assert weights(folder)["step"] == 6 * EPOCHS


def test_resume_auto_sets_aside_what_a_run_killed_before_its_first_checkpoint_left(tmp_path, uninterrupted):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "history.csv").write_text("epoch,step\n")  # written, then killed before any last.pt
    run(tmp_path, sys.executable, *train_args(folder, "trainer.resume=auto"))
    assert (folder / "interrupted" / "history.csv").read_text() == "epoch,step\n"
    assert_same_weights(weights(folder), uninterrupted)


def test_torchrun_restarts_a_job_whose_worker_was_killed_and_it_resumes_from_last_pt(tmp_path, uninterrupted):
    """rank 1 SIGKILLed once rank 0 has written a last.pt (each checkpoint write takes 1 s here, so the
    job is still running): torchrun --max-restarts=1 starts both workers again, they continue the run
    folder's last.pt and end with the uninterrupted run's weights."""
    folder = tmp_path / "run"
    command = [*TORCHRUN, "--standalone", "--nproc_per_node=2", "--max-restarts=1", "--monitor-interval=0.5",
               *train_args(folder, "trainer.resume=auto")]
    launcher = subprocess.Popen(command, cwd=tmp_path, env={**env(), **slow_writes(1)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "checkpoints" / "last.pt").exists():
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
            time.sleep(0.1)
        killed = rank_pids(launcher.pid)[1]
        os.kill(killed, signal.SIGKILL)
        out, err = launcher.communicate(timeout=TIMEOUT)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode == 0, err
    assert "failed (exitcode: -9) local_rank: 1" in err, err[-3000:]  # torchrun saw the kill, then restarted
    assert f"trainer.resume=auto: continuing {folder} from its last.pt" in out
    assert out.count("cnnexp train") == 2  # rank 0's summary table, once per attempt
    final = weights(folder)
    assert final["step"] == 6 * EPOCHS and final["world_size"] == 2
    assert_same_weights(final, uninterrupted)
    assert read_json(folder / "metrics.json")["epochs_run"] == EPOCHS


def test_two_nodes_meet_through_the_c10d_rendezvous_and_train_as_one_process(tmp_path, uninterrupted):
    """Two torchrun launches (one process each, each from its own working folder) with --nnodes=2 and
    a c10d rendezvous on this machine: one job of two ranks, whose weights are the one-process run's."""
    folder = tmp_path / "shared" / "run"  # the run folder on the "shared filesystem"; rank 0 writes it
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = []
    for rank in (0, 1):
        cwd = tmp_path / f"node{rank}"
        cwd.mkdir()
        command = [*TORCHRUN, "--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1", "--rdzv-backend=c10d",
                   f"--rdzv-endpoint={endpoint}", "--rdzv-id=cnnexp-test", *train_args(folder)]
        nodes.append(subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        results = [node.communicate(timeout=TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.communicate()
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    assert "2 (DDP, Gloo)" in " ".join("".join(out for out, _ in results).split())
    final = weights(folder)
    assert final["world_size"] == 2 and final["step"] == 6 * EPOCHS
    assert_same_weights(final, uninterrupted)
