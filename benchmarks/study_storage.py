"""Study storage under concurrent workers: W processes started together share one Optuna study of N
trials on each storage, first through cnnexp's study code (cnnexp/sweeps/study.py: lock, count, ask,
heartbeat, tell), then as Optuna's plain loop (`study.optimize(n_trials=N // W)` in each worker, the
storage as Optuna builds it from its URL), the hand-written reference. The objective is cheap (it sleeps
--trial-seconds and reports 3 intermediate values) so the storage is what is measured. For each storage
and way it prints the wall seconds, the finished trials the study ends with, and the workers that failed
(with the first line of their error, e.g. SQLite's "database is locked").

    python benchmarks/study_storage.py --workers 4 --trials 40
    python benchmarks/study_storage.py --workers 16 --trials 64 --postgres postgresql://postgres@127.0.0.1:5432/postgres

--postgres: a server to use (without it PostgreSQL is left out). One for a measurement, as root:
    d=$(mktemp -d); chown postgres $d; runuser -u postgres -- initdb -D $d/data -A trust -U postgres
    runuser -u postgres -- pg_ctl -D $d/data -o "-p 5432 -c listen_addresses=127.0.0.1 -k $d" -w start
"""

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def objective(trial, seconds: float) -> float:
    x = trial.suggest_float("x", -10, 10)
    for step in range(3):
        time.sleep(seconds / 3)
        trial.report(x * x + step, step)
    return x * x


def cnnexp_worker(url, folder: str, trials: int, seconds: float, errors) -> None:
    import optuna
    from optuna.trial import TrialState

    from cnnexp.sweeps.study import Heartbeat, next_trial, open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SimpleNamespace(storage=url, study="bench", heartbeat=60, trial_retries=3)
    try:
        study, lock, storage = open_study(settings, Path(folder), optuna.samplers.RandomSampler(),
                                          optuna.pruners.NopPruner())
        while (trial := next_trial(study, lock, trials, poll=1.0)) is not None:
            with Heartbeat(storage, trial._trial_id):
                value = objective(trial, seconds)
            study.tell(trial, value, state=TrialState.COMPLETE)
    except Exception as exc:  # noqa: BLE001 - a benchmark counts every failure, whatever it is
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def plain_worker(url, folder: str, trials: int, seconds: float, errors) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = url or JournalStorage(JournalFileBackend(str(Path(folder) / "optuna.journal")))
    try:
        study = optuna.create_study(storage=storage, study_name="bench", load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler())
        study.optimize(lambda trial: objective(trial, seconds), n_trials=trials)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def finished(url, folder: str) -> int:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = url or JournalStorage(JournalFileBackend(str(Path(folder) / "optuna.journal")))
    trials = optuna.load_study(study_name="bench", storage=storage).trials
    return sum(t.state.is_finished() for t in trials)


def measure(way: str, url, workers: int, trials: int, seconds: float) -> str:
    with tempfile.TemporaryDirectory() as folder:
        if url == "sqlite":
            url = f"sqlite:///{folder}/study.db"
        if url and url.startswith("postgresql"):
            reset_postgres(url)
        context = multiprocessing.get_context("spawn")
        errors = context.Manager().list()
        target, share = (cnnexp_worker, trials) if way == "cnnexp" else (plain_worker, trials // workers)
        processes = [context.Process(target=target, args=(url, folder, share, seconds, errors)) for _ in range(workers)]
        started = time.perf_counter()
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        wall = time.perf_counter() - started
        count = finished(url, folder)
    failures = f"; first: {errors[0]}" if errors else ""
    return f"{wall:7.1f} s  {count:4d} finished  {len(errors)} of {workers} workers failed{failures}"


def reset_postgres(url: str) -> None:
    """An empty study table for each measurement."""
    import optuna

    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg://", 1))
    for summary in optuna.get_all_study_summaries(storage):
        optuna.delete_study(study_name=summary.study_name, storage=storage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--trial-seconds", type=float, default=0.3)
    parser.add_argument("--postgres", help="postgresql://... of a running server (left out without)")
    args = parser.parse_args()
    storages = {"journal (default)": None, "sqlite": "sqlite"}
    if args.postgres:
        storages["postgresql"] = args.postgres
    print(f"{args.workers} workers started together, one study of {args.trials} trials, "
          f"{args.trial_seconds} s a trial")
    for name, url in storages.items():
        for way in ("cnnexp", "plain"):
            print(f"{name:18s} {way:6s} {measure(way, url, args.workers, args.trials, args.trial_seconds)}", flush=True)


if __name__ == "__main__":
    main()
