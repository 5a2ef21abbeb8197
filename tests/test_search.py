"""cnnexp sweep search=optuna: Hydra's override grammar as a search space, trials as run folders,
pruning, a continued study (many workers on one study: test_study_storage.py)."""

import pytest
from conftest import read_json

optuna = pytest.importorskip("optuna")

QUICK = ("dataset.limit=120", "trainer.batch_size=20", "device.threads=1", "optimizer=sgd")  # 6 steps an epoch, SGD (the rates below are its)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def space_of(*args):
    from cnnexp.sweeps.search import split_space

    return split_space(list(args))


def test_search_space_is_read_with_hydras_override_grammar():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    fixed, space = space_of("optimizer.lr=tag(log,interval(1e-4,1e-1))", "trainer.batch_size=range(10,50,step=10)",
                            "model.nkerns=choice([20,50],[10,30])", "optimizer.momentum=0.5,0.9",
                            "trainer.epochs=tag(int,interval(2,6))", "seed=3")
    assert fixed == ["seed=3"]
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["trainer.batch_size"] == IntDistribution(10, 40, step=10)  # range's stop is excluded, as in Hydra
    assert space["model.nkerns"] == CategoricalDistribution(["[20,50]", "[10,30]"])
    assert space["optimizer.momentum"] == CategoricalDistribution(["0.5", "0.9"])
    assert space["trainer.epochs"] == IntDistribution(2, 6)


def test_plain_lists_stay_a_grid_sweep_and_intervals_need_optuna(cnnexp):
    from cnnexp.sweeps.run import compose_settings, make_plan

    plan = make_plan(compose_settings([]), ["optimizer.lr=0.1,0.01"])
    assert plan.grid == {"optimizer.lr": ["0.1", "0.01"]}
    result = cnnexp("sweep", "optimizer.lr=tag(log,interval(1e-4,1e-1))")
    assert result.code == 2 and "only lists (a,b,c), choice() and range() can be swept" in result.err


@pytest.mark.parametrize("args, message", [
    (("search=optuna", "trainer.epochs=2"), "search=optuna needs a search space"),
    (("search=optuna", "sampler=grid", "optimizer.lr=interval(0.01,0.1)"), "sampler=grid is not one of: tpe, random"),
    (("search=optuna", "optimizer.lr=interval(0.1,0.01)"), "needs start < end"),
    (("search=optuna", "seeds=3", "optimizer.lr=interval(0.01,0.1)"), "one seed per trial"),
    (("search=bayes",), "search=bayes is not one of: grid, optuna"),
    (("search=optuna", "heartbeat=0", "optimizer.lr=interval(0.01,0.1)"), "heartbeat=0 must be an integer >= 1"),
    (("search=optuna", "storage=redis://localhost", "optimizer.lr=interval(0.01,0.1)"),
     "storage=redis://localhost is not a database URL cnnexp shares studies in"),
])
def test_bad_search_input_is_one_line_exit_2(cnnexp, workdir, args, message):
    result = cnnexp("sweep", *args)
    assert result.code == 2 and message in result.err, result.err
    assert not (workdir / "outputs").exists()


def test_hopeless_trial_is_pruned_not_failed_and_a_rerun_continues_the_study(cnnexp, workdir):
    sweep_dir = workdir / "search"
    sweep_dir.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{sweep_dir / 'optuna.db'}", study_name="cnnexp")
    study.enqueue_trial({"optimizer.lr": 0.1})  # learns: 92.5 % validation error after epoch 2
    study.enqueue_trial({"optimizer.lr": 1e-7})  # does not move from 97.5 %: pruned at the evaluation of step 12
    args = ("sweep", "search=optuna", "startup_trials=1", "optimizer.lr=tag(log,interval(1e-7,0.5))",
            "trainer.epochs=3", *QUICK, f"sweep.dir={sweep_dir}")
    result = cnnexp(*args, "trials=2")
    assert result.code == 0, result.err
    assert "0 of 2 trials done or running" in result.out
    states = [t.state.name for t in optuna.load_study(study_name="cnnexp", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials]
    assert states == ["COMPLETE", "PRUNED"]
    pruned = read_json(sweep_dir / "trial-0001" / "metrics.json")
    assert pruned["pruned"] is True and pruned["steps"] == 12 and pruned["epochs_run"] == 2
    assert not (sweep_dir / "trial-0001" / "failed.json").exists()
    statuses = {run["folder"].rsplit("/", 1)[-1]: run["status"]
                for point in read_json(sweep_dir / "summary.json")["points"] for run in point["runs"]}
    assert statuses == {"trial-0000": "done", "trial-0001": "pruned"}
    assert "| pruned |" in (sweep_dir / "summary.md").read_text().splitlines()[0]
    for name in ("optuna_history.png", "summary.png"):
        assert (sweep_dir / name).read_bytes()[:8] == PNG_SIGNATURE

    same = cnnexp(*args, "trials=2")  # the same command again: the study already has its 2 trials
    assert same.code == 0, same.err
    assert "2 of 2 trials done or running" in same.out and "ran 0 trials" in same.out
    again = cnnexp(*args, "trials=3")  # trials counts the study's trials: one more
    assert again.code == 0, again.err
    assert "2 of 3 trials done or running" in again.out and "ran 1 trial " in again.out
    assert (sweep_dir / "trial-0002" / "metrics.json").exists()
    assert len(read_json(sweep_dir / "summary.json")["points"]) == 3
