"""Where an Optuna study lives, and how its workers share it: the storage that fits the deployment, a
heartbeat on every running trial (a dead worker's trial is failed and retried), and `trials=N` counted
per study (N finished trials however many workers join and however often the command is re-run).

Storage (`storage=`):
    null                  a journal file `optuna.journal` in the sweep folder (Optuna's JournalStorage with
                          its file backend and the O_EXCL lock file, safe on NFS v3+): one machine or
                          several on a shared filesystem
    postgresql://, mysql://  a database server: workers on any machines
    sqlite:///file.db     one machine, a few processes (Optuna advises against SQLite for parallel work)
A sweep folder that already holds `optuna.db` (made before the journal was the default) goes on with it.

Counting: a worker takes the study's lock (a lock file beside a journal or SQLite file, an advisory lock
on a database server), fails stale trials (their retries queue up as WAITING trials), counts the trials
that hold a place (complete, pruned, running, or failed by their own run), and asks for a new trial
(a queued retry first) only while that count is below N. A retry takes its dead trial's place, so
each trial is counted once. A worker with nothing left to ask waits while other workers' trials run: one
of them may die, and its retry must still be run.
"""

import importlib.util
import os
import socket
import threading
import time
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # Optuna's extension point for storages with heartbeats
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState

from cnnexp.utils.errors import UserError
from cnnexp.utils.files import exclusive_lock

JOURNAL = "optuna.journal"
OLD_SQLITE = "optuna.db"  # the default before the journal: a sweep folder holding one goes on with it
SERVERS = ("postgresql", "mysql")
LOCK_KEY = 0x636E6E65  # "cnne": the high half of a study's PostgreSQL advisory-lock key (the low: its name's CRC)
RUN_FAILED = "run_failed"  # user attr of a trial failed by its own run (diverged, error): it holds its place
WORKER = "worker"  # user attr: host:pid of the worker that ran the trial


def storage_url(settings, sweep_dir: Path) -> str:
    """The storage a study lives in, as a URL (`journal:///<file>` for the journal file)."""
    if settings.storage:
        return settings.storage
    old = sweep_dir / OLD_SQLITE
    if old.exists() and not (sweep_dir / JOURNAL).exists():
        return f"sqlite:///{old.resolve()}"
    return f"journal:///{(sweep_dir / JOURNAL).resolve()}"


def open_study(settings, sweep_dir: Path, sampler, pruner):
    """(the study, its lock, its storage) in the storage `settings.storage` names (see the module docstring)."""
    url = storage_url(settings, sweep_dir)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat = {"heartbeat_interval": settings.heartbeat, "grace_period": 2 * settings.heartbeat,
                 "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                     max_retry=settings.trial_retries, inherit_intermediate_values=True)}
    try:
        # workers started together would each create a new database's tables: one at a time per folder
        with exclusive_lock(sweep_dir, ".optuna.lock", wait=True):
            storage, lock = make_storage(url, heartbeat)
            study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=settings.study,
                                        direction="minimize", load_if_exists=True)
    except (ValueError, ImportError, optuna.exceptions.StorageInternalError) as exc:
        raise UserError(f"cannot open the Optuna study '{settings.study}' in {url}: {str(exc).splitlines()[0]}; "
                        f"check storage=<database URL>{driver_hint(url, exc)}") from exc
    return study, (lambda: lock(study.study_name)), storage


def driver_hint(url: str, exc: Exception) -> str:
    if isinstance(exc, ImportError) or "DB access module" in str(exc):
        return " and install its driver: pip install 'cnnexp[search]' (PostgreSQL) or pip install pymysql (MySQL)"
    return ""


def check_storage(storage) -> None:
    """A storage URL cnnexp can count trials in (before anything is written)."""
    scheme = str(storage).split(":", 1)[0].split("+", 1)[0]
    if storage is not None and (scheme not in (*SERVERS, "sqlite") or "://" not in str(storage)):
        raise UserError(f"storage={storage} is not a database URL cnnexp shares studies in: give postgresql://..., "
                        f"mysql://... or sqlite:///<file> (or leave it out for a journal file in the sweep folder)")


def make_storage(url: str, heartbeat: dict):
    """(storage, lock factory: study name -> context manager) for a URL."""
    if url.startswith("journal:///"):
        path = url[len("journal:///") - 1:]
        backend = JournalFileBackend(path, lock_obj=JournalFileOpenLock(path))
        return HeartbeatJournalStorage(backend, **heartbeat), lambda name: file_lock(path + ".trials")
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":  # several processes on one file: wait for its lock instead of failing
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}, **heartbeat)
        return storage, lambda name: file_lock(url.split(":///", 1)[1] + ".trials")
    storage = with_retries(lambda: optuna.storages.RDBStorage(with_driver(url), engine_kwargs={
        "pool_pre_ping": True}, **heartbeat))  # a server (check_storage let nothing else through)
    return storage, lambda name: server_lock(storage.engine, scheme, name)


def with_driver(url: str) -> str:
    """`postgresql://` as `postgresql+psycopg://` when psycopg 3 (cnnexp[search]'s driver) is installed:
    SQLAlchemy before 2.1 would look for psycopg2 instead."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def with_retries(make, attempts: int = 5):
    """`make()`, tried again when workers on other machines create the same tables at the same moment
    (PostgreSQL answers one of them with a duplicate-key error)."""
    import sqlalchemy

    for attempt in range(attempts):
        try:
            return make()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@contextmanager
def file_lock(path: str):
    """Optuna's NFS-safe lock file (created with O_EXCL; one left by a killed worker is broken after 30 s)."""
    lock = JournalFileOpenLock(path)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def server_lock(engine, scheme: str, study_name: str):
    """A session-level advisory lock on the database server, one per study name (the server drops it
    when the worker's connection dies)."""
    from sqlalchemy import text

    take, give = {"postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
                  "mysql": ("SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)")}[scheme]
    key = LOCK_KEY * 2**32 + zlib.crc32(study_name.encode()) if scheme == "postgresql" else f"cnnexp:{study_name}"[:64]
    with engine.connect() as connection:
        connection.execute(text(take), {"key": key})
        try:
            yield
        finally:
            connection.execute(text(give), {"key": key})
            connection.commit()


def holds_place(trial) -> bool:
    """Counted towards `trials=N`: complete, pruned, running, or failed by its own run. A trial failed
    because its worker died is not: its retry (or a new trial) takes the place."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or (
        trial.state == TrialState.FAIL and RUN_FAILED in trial.user_attrs)


def counted(study) -> int:
    return sum(holds_place(t) for t in study.get_trials(deepcopy=False))


def next_trial(study, lock, target: int, poll: float):
    """The next trial this worker runs, or None when the study has `target` trials finished. Waits
    (polling every `poll` s) while other workers' trials run and no place is free."""
    said = False
    while True:
        with lock():
            optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            if sum(holds_place(t) for t in trials) < target:
                with warnings.catch_warnings():  # the heartbeat is ours (`Heartbeat`), not optimize()'s
                    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                    trial = study.ask()
                trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
                return trial
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if not running:
            return None
        if not said:
            print(f"the study has its {target} trials; waiting for the {running} still running on other workers "
                  f"(a dead worker's trial is retried here)", flush=True)
            said = True
        time.sleep(poll)


class Heartbeat:
    """Records the trial's heartbeat in the storage every interval while the trial runs (Optuna's
    optimize loop does the same; this worker runs trials by ask and tell)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)

    def beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """JournalStorage with Optuna's heartbeat protocol (RDBStorage has it built in; the journal has not):
    the heartbeat is a trial system attribute holding the worker's clock, so the machines sharing a
    journal need synchronised clocks (NTP), as a cluster's have."""

    def __init__(self, backend, heartbeat_interval: int, grace_period: int, heartbeat_stale_trial_callback):
        super().__init__(backend)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.stale_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker took this trial for dead (a very late beat): its retry runs

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if now - t.system_attrs.get("heartbeat", t.datetime_start.timestamp()) > self.grace_period]

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_callback
