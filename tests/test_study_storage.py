"""Many workers on one Optuna study (`cnnexp sweep search=optuna`), as separate processes: the journal
file in the sweep folder (the default), a real PostgreSQL server, and SQLite for one machine. `trials=N`
is the study's size, a worker killed mid-trial has its trial failed by heartbeat and retried."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import read_json, slow_writes
from test_elastic import free_port

optuna = pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("dataset.limit=120", "trainer.batch_size=20", "device.threads=1", "optimizer=sgd")  # 6 steps an epoch, SGD (the rates below are its)
SEARCH = ("search=optuna", "sampler=random", "pruner=none", "heartbeat=1",
          "optimizer.lr=tag(log,interval(1e-3,0.2))", *QUICK)
TIMEOUT = 300


def environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def start_worker(cwd: Path, *args: str, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnexp", "sweep", *SEARCH, *args], cwd=cwd,
                            env=environment(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(workers: list[subprocess.Popen]) -> list[tuple[str, str]]:
    try:
        return [worker.communicate(timeout=TIMEOUT) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()


def journal(path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def states(study) -> list[str]:
    return sorted(t.state.name for t in study.trials)


def summary_runs(sweep_dir: Path) -> dict:
    """{run folder name: status} of the summary written in sweep_dir."""
    return {run["folder"].rsplit("/", 1)[-1]: run["status"]
            for point in read_json(sweep_dir / "summary.json")["points"] for run in point["runs"]}


def kill_mid_trial(victim: subprocess.Popen, sweep_dir: Path, study_path: Path) -> int:
    """SIGKILL `victim` once one of its trials has written a last.pt; the number of that trial."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and victim.poll() is None:
        if study_path.exists():
            for trial in optuna.load_study(study_name="cnnexp", storage=journal(study_path)).trials:
                mine = trial.user_attrs.get("worker", "").endswith(f":{victim.pid}")
                folder = sweep_dir / f"trial-{trial.number:04d}"
                if mine and trial.state.name == "RUNNING" and (folder / "checkpoints" / "last.pt").exists():
                    os.kill(victim.pid, signal.SIGKILL)
                    victim.communicate()
                    return trial.number
        time.sleep(0.2)
    raise AssertionError(f"the victim worker never ran a trial to a checkpoint: {victim.communicate()[1][-2000:]}")


def test_four_workers_on_the_journal_end_with_exactly_n_trials_and_a_killed_ones_trial_is_retried(tmp_path):
    """4 workers started in the same second on the default journal file; one (whose checkpoint writes
    are slowed to 1.5 s, so it is caught mid-trial) is SIGKILLed after its trial's first last.pt. The
    others fail that trial by its stopped heartbeat, retry it in its own folder from its last.pt, and the
    study ends with exactly 6 finished trials, 6 run folders, one summary; no lock error anywhere."""
    sweep_dir = tmp_path / "shared"
    args = ("trials=6", "trainer.epochs=3", f"sweep.dir={sweep_dir}")
    workers = [start_worker(tmp_path, *args, **(slow_writes(1.5) if i == 0 else {}))
               for i in range(4)]
    killed = kill_mid_trial(workers[0], sweep_dir, sweep_dir / "optuna.journal")
    outputs = finish(workers[1:])
    for worker, (out, err) in zip(workers[1:], outputs):
        assert worker.returncode == 0, err[-3000:]
        assert "lock" not in err.lower() and "Traceback" not in err, err[-3000:]
    study = optuna.load_study(study_name="cnnexp", storage=journal(sweep_dir / "optuna.journal"))
    assert states(study) == ["COMPLETE"] * 6 + ["FAIL"]
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") is not None)
    assert failed.number == killed and retry.system_attrs["failed_trial"] == killed
    assert retry.state.name == "COMPLETE" and retry.params == failed.params
    assert any(f"continuing {sweep_dir / f'trial-{killed:04d}'} from its last.pt" in out for out, _ in outputs)
    counted = sorted(t.system_attrs.get("failed_trial", t.number) for t in study.trials if t.state.name == "COMPLETE")
    assert sorted(p.name for p in sweep_dir.glob("trial-*")) == [f"trial-{n:04d}" for n in counted]
    assert summary_runs(sweep_dir) == {f"trial-{n:04d}": "done" for n in counted}


@pytest.mark.slow  # the re-run rule is also in test_search.py; this adds SQLite with two workers
def test_a_study_of_n_trials_is_not_grown_by_a_rerun_and_sqlite_serves_one_machine(tmp_path):
    """storage=sqlite:///...: two workers together make the study's 3 trials (not 3 each); the same
    command again runs none, and trials=4 runs one more."""
    args = ("trainer.epochs=1", f"storage=sqlite:///{tmp_path / 'study.db'}", "sweep.dir=sweep")
    outputs = finish([start_worker(tmp_path, "trials=3", *args) for _ in range(2)])
    assert all("Traceback" not in err for _, err in outputs), outputs
    study = optuna.load_study(study_name="cnnexp", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert states(study) == ["COMPLETE"] * 3
    again = finish([start_worker(tmp_path, "trials=3", *args)])[0][0]
    assert "3 of 3 trials done or running" in again and "ran 0 trials" in again
    more = finish([start_worker(tmp_path, "trials=4", *args)])[0][0]
    assert "ran 1 trial " in more
    assert states(study) == ["COMPLETE"] * 4


# ---- a real PostgreSQL server --------------------------------------------------------------------------

def postgres_programs() -> Path | None:
    """The folder holding initdb and pg_ctl: on the PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    return next((Path(f) for f in folders if (Path(f) / "initdb").exists()), None)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server in a temporary data folder, on a free port of 127.0.0.1, stopped at the end:
    its URL. As root, the server runs as the `postgres` user (it refuses to run as root)."""
    programs = postgres_programs()
    if programs is None:
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) not found: apt-get install postgresql")
    pytest.importorskip("psycopg", reason="no PostgreSQL driver: pip install 'cnnexp[search]'")
    as_user = []
    folder = Path(tempfile.mkdtemp(prefix="cnnexp-postgres-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root needs runuser to start PostgreSQL as the postgres user")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    try:
        subprocess.run([*as_user, str(programs / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"
        subprocess.run([*as_user, str(programs / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                        "-o", options, "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=120)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(programs / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_four_workers_from_two_folders_share_one_study_on_postgresql(tmp_path, postgres):
    """Two "machines" (working folders), two workers each, one study on the server: exactly 5 finished
    trials, each a run folder in the sweep folder of the worker that ran it, one summary over both."""
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    workers = []
    for machine in machines:
        machine.mkdir()
        workers += [start_worker(machine, "trials=5", "trainer.epochs=1", f"storage={postgres}",
                                 "study=shared", "sweep.dir=sweep") for _ in range(2)]
    for worker, (out, err) in zip(workers, finish(workers)):
        assert worker.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    study = optuna.load_study(study_name="shared", storage=postgres)
    assert states(study) == ["COMPLETE"] * 5
    folders = sorted(p.name for machine in machines for p in (machine / "sweep").glob("trial-*"))
    assert folders == [f"trial-{t.number:04d}" for t in sorted(study.trials, key=lambda t: t.number)]
    summary = subprocess.run([sys.executable, "-m", "cnnexp", "sweep", "summarize", f"dir={tmp_path}"], cwd=tmp_path,
                             env=environment(), capture_output=True, text=True, timeout=TIMEOUT)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert sorted(summary_runs(tmp_path)) == folders and set(summary_runs(tmp_path).values()) == {"done"}
