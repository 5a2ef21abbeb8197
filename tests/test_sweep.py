"""cnnexp sweep: grid expansion, aggregation over seeds, failures, resume-skip, launchers, end to end."""

import json
import math

import pytest
from conftest import only_run, read_json
from cnnexp.sweeps.run import Plan, write_sweep_json
from PIL import Image

QUICK = ("dataset.limit=40", "trainer.batch_size=20", "optimizer=sgd")  # 40 training faces, 2 steps an epoch; the sweep mechanics with SGD, whose rates these tests pick
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def plan_for(*args):
    from cnnexp.sweeps.run import compose_settings, make_plan, split_args

    settings_args, _, train_args = split_args(list(args))
    return make_plan(compose_settings(settings_args), train_args)


def runs_in(sweep_dir):
    return sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())


def assert_valid_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] >= 400 and image.size[1] >= 300


# ---- grid expansion ------------------------------------------------------------------------------
def test_command_line_grid_is_the_cross_product_times_seeds():
    plan = plan_for("optimizer.lr=0.1,0.01", "model.nkerns=[20,50],[5,10]", "trainer.epochs=2", "seeds=3")
    assert plan.grid == {"optimizer.lr": ["0.1", "0.01"], "model.nkerns": ["[20,50]", "[5,10]"]}
    assert plan.fixed == {"trainer.epochs": "trainer.epochs=2"}
    assert plan.seeds == ["0", "1", "2"]
    assert len(plan.points()) == 4 and len(plan.runs()) == 12
    assert plan.runs()[:2] == [(("0.1", "[20,50]"), "0"), (("0.1", "[20,50]"), "1")]


@pytest.mark.parametrize("preset, key, values", [
    ("lr", "optimizer.lr", ["0.1", "0.05", "0.01"]),
    ("batch_size", "trainer.batch_size", ["1", "2", "5", "10", "20", "40"]),
    ("nkerns", "model.nkerns", ["[20,50]", "[10,30]", "[5,10]"]),
])
def test_presets_are_the_tutorial_studies(preset, key, values):
    plan = plan_for(f"sweep={preset}")
    assert plan.grid == {key: values}
    assert plan.fixed == {"experiment": "experiment=olivetti_lenet"} and plan.seeds == ["0"]


def test_command_line_overrides_a_preset_key_by_key():
    plan = plan_for("sweep=shuffle_batch_size", "trainer.shuffle=true", "trainer.batch_size=40,20", "seeds=2")
    assert plan.grid == {"trainer.batch_size": ["40", "20"]}
    assert plan.fixed == {"experiment": "experiment=olivetti_lenet", "trainer.shuffle": "trainer.shuffle=true"}
    assert len(plan.runs()) == 4
    assert plan_for("sweep=shuffle_batch_size").grid["trainer.shuffle"] == ["false", "true"]


def test_range_sweeps_and_explicit_seeds():
    plan = plan_for("trainer.batch_size=range(10,40,10)", "seed=3,7")
    assert plan.grid == {"trainer.batch_size": ["10", "20", "30"]} and plan.seeds == ["3", "7"]
    assert plan.hydra_overrides() == ["trainer.batch_size=10,20,30", "seed=3,7"]


def test_continued_sweep_keeps_a_sensible_value_order(tmp_path):
    write_sweep_json(tmp_path, Plan(grid={"model.nkerns": ["[10,30]", "[5,10]"]}, seeds=["0"]), "test_error")
    write_sweep_json(tmp_path, Plan(grid={"model.nkerns": ["[20,50]", "[10,30]", "[5,10]"]}, seeds=["0", "1"]),
                     "test_error")
    write_sweep_json(tmp_path, Plan(grid={"model.nkerns": ["[5,10]"]}, seeds=["1"]), "test_error")  # one point again
    saved = read_json(tmp_path / "sweep.json")
    assert saved["grid"] == {"model.nkerns": ["[20,50]", "[10,30]", "[5,10]"]} and saved["seeds"] == ["0", "1"]


# ---- aggregation ---------------------------------------------------------------------------------
def fake_run(sweep_dir, name, overrides, metrics=None, failed=None):
    folder = sweep_dir / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        full = {"best_epoch": 5, "train_seconds": 10.0, "epochs_run": 9, "diverged": False, **metrics}
        (folder / "metrics.json").write_text(json.dumps(full))
    if failed is not None:
        (folder / "failed.json").write_text(json.dumps({"error": failed, "exit_code": 2}))


def test_aggregation_mean_std_min_max_and_failures(cnnexp, workdir):
    sweep_dir = workdir / "sweep"
    for seed, (val, test) in enumerate([(0.1, 0.2), (0.2, 0.3), (0.3, 0.7)]):
        fake_run(sweep_dir, f"lr=0.1,seed={seed}", ["trainer.epochs=9", "optimizer.lr=0.1", f"seed={seed}"],
                 {"best_val_error": val, "test_error": test})
    fake_run(sweep_dir, "lr=0.01,seed=0", ["trainer.epochs=9", "optimizer.lr=0.01", "seed=0"],
             {"best_val_error": 0.05, "test_error": 0.1})
    fake_run(sweep_dir, "lr=0.01,seed=1", ["trainer.epochs=9", "optimizer.lr=0.01", "seed=1"],
             {"best_val_error": 0.5, "test_error": 0.5, "diverged": True}, failed="Model diverged with loss = nan")
    fake_run(sweep_dir, "lr=0.01,seed=2", ["trainer.epochs=9", "optimizer.lr=0.01", "seed=2"],
             failed="trainer.batch_size=1000 does not fit")

    result = cnnexp("sweep", "summarize", f"dir={sweep_dir}")
    assert result.code == 0, result.err
    summary = read_json(sweep_dir / "summary.json")
    assert summary["keys"] == ["optimizer.lr"]  # inferred: the only key that varies, seed aside
    best, worst = summary["points"]  # sorted by mean validation error
    assert summary["metric"] == "best_val_error" and summary["best"] == {"optimizer.lr": "0.01"}
    assert "best by best_val_error: optimizer.lr=0.01\n  val err 5.00 ± 0.00 %, test err 10.00 ± 0.00 %\n" in result.out
    assert best["values"] == {"optimizer.lr": "0.01"} and best["runs_ok"] == 1 and best["failed"] == 2
    assert best["test_error"] == {"mean": 0.1, "std": 0.0, "min": 0.1, "max": 0.1}
    assert worst["runs_ok"] == 3 and worst["failed"] == 0
    assert worst["test_error"]["mean"] == pytest.approx(0.4)
    assert worst["test_error"]["std"] == pytest.approx(math.sqrt(((0.2 - 0.4) ** 2 + 0.1 ** 2 + 0.3 ** 2) / 2))
    assert (worst["test_error"]["min"], worst["test_error"]["max"]) == (0.2, 0.7)
    assert worst["best_val_error"]["mean"] == pytest.approx(0.2)
    statuses = sorted(r["status"] for r in best["runs"])
    assert statuses == ["diverged", "done", "failed"]

    assert "diverged" in result.out and "does not fit" in result.out
    lines = (sweep_dir / "summary.md").read_text().splitlines()
    assert lines[0].startswith("| optimizer.lr | runs | val err %")
    assert lines[2].startswith("| 0.01 | 1/3 | 5.00 ± 0.00 | 5.00–5.00 | 10.00 ± 0.00")
    assert lines[3].startswith("| 0.1 | 3/3 | 20.00 ± 10.00 | 10.00–30.00 | 40.00 ± 26.46 | 20.00–70.00")
    csv_lines = (sweep_dir / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("optimizer.lr,runs_ok,runs_total,failed,unfinished,best_val_error_mean")
    assert len(csv_lines) == 3
    assert_valid_png(sweep_dir / "summary.png")


def test_runs_gathered_by_hand_group_by_value_not_by_spelling(cnnexp, workdir):
    """Without a sweep.json, `2e-3` and `0.002`, `False` and `false` are the same point."""
    sweep_dir = workdir / "gathered"
    fake_run(sweep_dir, "a", ["optimizer.lr=2e-3", "augmentation.flip=false", "model.widths=[8, 16]", "seed=0"],
             {"best_val_error": 0.1, "test_error": 0.2})
    fake_run(sweep_dir, "b", ["optimizer.lr=0.002", "augmentation.flip=False", "model.widths=[8,16]", "seed=1"],
             {"best_val_error": 0.3, "test_error": 0.4})
    fake_run(sweep_dir, "c", ["optimizer.lr=0.02", "augmentation.flip=false", "model.widths=[8,16]", "seed=0"],
             {"best_val_error": 0.5, "test_error": 0.6})
    result = cnnexp("sweep", "summarize", f"dir={sweep_dir}")
    assert result.code == 0, result.err
    summary = read_json(sweep_dir / "summary.json")
    assert summary["keys"] == ["optimizer.lr"]
    assert [(p["values"]["optimizer.lr"], p["runs_ok"]) for p in summary["points"]] == [("0.002", 2), ("0.02", 1)]


def test_the_choice_is_made_on_validation_with_test_beside_it(cnnexp, workdir):
    """The point with the lower validation error comes first and is the one picked, though another has
    the lower test error: the test split stays out of the choice."""
    sweep_dir = workdir / "sweep"
    sweep_dir.mkdir()
    write_sweep_json(sweep_dir, Plan(grid={"optimizer.lr": ["0.1", "0.01", "0.001"]}, seeds=["0"]), "best_val_error")
    for lr, val, test in (("0.1", 0.3, 0.05), ("0.01", 0.1, 0.4), ("0.001", 0.2, 0.2)):
        fake_run(sweep_dir, f"optimizer.lr={lr},seed=0", [f"optimizer.lr={lr}", "seed=0"],
                 {"best_val_error": val, "test_error": test})
    result = cnnexp("sweep", "summarize", f"dir={sweep_dir}")
    assert result.code == 0, result.err
    summary = read_json(sweep_dir / "summary.json")
    assert [p["values"]["optimizer.lr"] for p in summary["points"]] == ["0.01", "0.001", "0.1"]
    assert summary["best"] == {"optimizer.lr": "0.01"}
    assert "sorted by best_val_error" in result.out
    assert "best by best_val_error: optimizer.lr=0.01\n  val err 10.00 ± 0.00 %, test err 40.00 ± 0.00 %\n" in result.out
    assert (sweep_dir / "summary.md").read_text().splitlines()[2].startswith("| 0.01 | 1/1 | 10.00 ± 0.00 |")


def test_numeric_keys_are_on_a_numeric_axis_in_numeric_order(workdir):
    """Learning rates given as 0.1,0.01,0.001 are plotted 0.001 < 0.01 < 0.1 on a log axis; values within
    a decade on a linear one; words one tick each, in the grid's order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnexp.sweeps.folders import load_runs
    from cnnexp.sweeps.plot import place
    from cnnexp.sweeps.summary import point_keys

    sweep_dir = workdir / "sweep"
    sweep_dir.mkdir()
    write_sweep_json(sweep_dir, Plan(grid={"optimizer.lr": ["0.1", "0.01", "0.001"],
                                           "optimizer": ["sgd", "adam"]}, seeds=["0"]), "best_val_error")
    for lr in ("0.1", "0.01", "0.001"):
        for name in ("sgd", "adam"):
            fake_run(sweep_dir, f"{lr}-{name}", [f"optimizer.lr={lr}", f"optimizer={name}", "seed=0"],
                     {"best_val_error": 0.1, "test_error": 0.2})
    _, orders = point_keys(sweep_dir, load_runs(sweep_dir))
    assert orders == {"optimizer.lr": ["0.001", "0.01", "0.1"], "optimizer": ["sgd", "adam"]}
    _, axes = plt.subplots(1, 3)
    assert place(axes[0], "optimizer.lr", orders["optimizer.lr"]) == [0.001, 0.01, 0.1]
    assert axes[0].get_xscale() == "log"
    assert place(axes[1], "trainer.batch_size", ["10", "20", "40"]) == [10, 20, 40]
    assert axes[1].get_xscale() == "linear"
    assert place(axes[2], "optimizer", orders["optimizer"]) == [0, 1]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["sgd", "adam"]
    plt.close("all")


def test_summary_of_two_keys_and_another_metric(cnnexp, workdir):
    sweep_dir = workdir / "sweep"
    for bs in (10, 40):
        for shuffle in ("false", "true"):
            fake_run(sweep_dir, f"{bs}-{shuffle}", [f"trainer.batch_size={bs}", f"trainer.shuffle={shuffle}",
                                                    "seed=0"],
                     {"best_val_error": 0.1, "test_error": 0.2, "best_epoch": bs + (shuffle == "true")})
    fake_run(sweep_dir, "10-false-1", ["trainer.batch_size=10", "trainer.shuffle=false", "seed=1"])  # still running
    result = cnnexp("sweep", "summarize", f"dir={sweep_dir}", "sweep.metric=best_epoch")
    assert result.code == 0, result.err
    summary = read_json(sweep_dir / "summary.json")
    assert summary["keys"] == ["trainer.batch_size", "trainer.shuffle"] and summary["metric"] == "best_epoch"
    assert [p["best_epoch"]["mean"] for p in summary["points"]] == [10, 11, 40, 41]
    assert [p["unfinished"] for p in summary["points"]] == [1, 0, 0, 0]
    header = (sweep_dir / "summary.md").read_text().splitlines()[0]
    assert header.endswith("| failed | unfinished |")
    assert_valid_png(sweep_dir / "summary.png")


# ---- end to end ----------------------------------------------------------------------------------
def test_sweep_end_to_end_then_resume_skips_everything(cnnexp, workdir):
    result = cnnexp("sweep", "optimizer.lr=0.1,0.01", "trainer.epochs=1", "seeds=2", *QUICK)
    assert result.code == 0, result.err
    sweep_dir = only_run(workdir / "outputs" / "sweep")
    assert runs_in(sweep_dir) == ["optimizer.lr=0.01,seed=0", "optimizer.lr=0.01,seed=1",
                                  "optimizer.lr=0.1,seed=0", "optimizer.lr=0.1,seed=1"]
    for run in runs_in(sweep_dir):
        metrics = read_json(sweep_dir / run / "metrics.json")
        assert metrics["epochs_run"] == 1
        assert list((sweep_dir / run).glob("events.out.tfevents.*")), "TensorBoard events (with hparams)"
    summary = read_json(sweep_dir / "summary.json")
    assert len(summary["points"]) == 2 and all(p["runs_ok"] == 2 for p in summary["points"])
    for name in ("summary.csv", "summary.md"):
        assert (sweep_dir / name).exists()
    assert_valid_png(sweep_dir / "summary.png")
    assert "2 points (optimizer.lr) x 2 seeds = 4 runs" in result.out
    assert "test err %" in result.out and "0.01" in result.out

    before = {run: (sweep_dir / run / "metrics.json").stat().st_mtime_ns for run in runs_in(sweep_dir)}
    again = cnnexp("sweep", "optimizer.lr=0.1,0.01", "trainer.epochs=1", "seeds=2", *QUICK,
                   f"sweep.dir={sweep_dir}")
    assert again.code == 0, again.err
    assert "all 2 points already done (4 runs); nothing to run" in again.out
    assert "Launching" not in again.out
    assert {run: (sweep_dir / run / "metrics.json").stat().st_mtime_ns for run in runs_in(sweep_dir)} == before

    grown = cnnexp("sweep", "optimizer.lr=0.1,0.01", "trainer.epochs=1", "seeds=3", *QUICK, f"sweep.dir={sweep_dir}")
    assert grown.code == 0, grown.err
    assert "4 of 6 runs already done; running the other 2" in grown.out
    assert len(runs_in(sweep_dir)) == 6
    assert {run: (sweep_dir / run / "metrics.json").stat().st_mtime_ns for run in before} == before

    changed = cnnexp("sweep", "optimizer.lr=0.1,0.01", "trainer.epochs=2", "seeds=2", *QUICK, f"sweep.dir={sweep_dir}")
    assert changed.code == 2 and "use the same overrides or a new sweep.dir" in changed.err
    assert changed.err.count("\n") == 1


def test_sweep_dir_names_a_new_folder_then_continues_it(cnnexp, workdir):
    """A job script can run the same command again (after a preemption) whether the folder exists or not."""
    args = ("optimizer.lr=0.1,0.01", "trainer.epochs=1", *QUICK, "sweep.dir=studies/lr")
    first = cnnexp("sweep", *args)
    assert first.code == 0, first.err
    assert "2 points (optimizer.lr) x 1 seed = 2 runs in studies/lr" in first.out
    assert sorted(runs_in(workdir / "studies" / "lr")) == ["optimizer.lr=0.01,seed=0", "optimizer.lr=0.1,seed=0"]
    table = read_json(workdir / "studies" / "lr" / "summary.json")["points"]
    second = cnnexp("sweep", *args)
    assert second.code == 0 and "nothing to run" in second.out and "Launching" not in second.out
    assert read_json(workdir / "studies" / "lr" / "summary.json")["points"] == table
    assert not (workdir / "outputs").exists()


def test_interrupted_run_starts_again_in_its_folder(cnnexp, workdir):
    args = ("experiment=olivetti_lenet", "optimizer.lr=0.05", "trainer.epochs=2", *QUICK)  # a group, too
    assert cnnexp("sweep", *args).code == 0
    sweep_dir = only_run(workdir / "outputs" / "sweep")
    run = sweep_dir / "seed=0"
    first = read_json(run / "metrics.json")
    (run / "metrics.json").unlink()  # as if killed after the last checkpoint was written

    result = cnnexp("sweep", *args, f"sweep.dir={sweep_dir}")
    assert result.code == 0, result.err
    assert "restarting the interrupted run" in result.out
    assert (run / "interrupted" / "checkpoints" / "last.pt").exists()
    again = read_json(run / "metrics.json")
    assert again["test_error"] == first["test_error"] and again["epochs_run"] == 2
    assert not (run / "failed.json").exists()


def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(cnnexp, workdir):
    result = cnnexp("sweep", "trainer.batch_size=20,1000", "optimizer.lr=0.05,1e12", "model.activation=relu",
                    "model.init=pytorch", "trainer.eval_every=1", "trainer.epochs=1", "dataset.limit=40", "optimizer=sgd")
    assert result.code == 0, result.err
    sweep_dir = only_run(workdir / "outputs" / "sweep")
    too_big = sweep_dir / "optimizer.lr=0.05,seed=0,trainer.batch_size=1000"
    assert "does not fit" in read_json(too_big / "failed.json")["error"]
    huge = "1000000000000.0"  # Hydra's parser reads 1e12 as a float
    diverged = sweep_dir / f"optimizer.lr={huge},seed=0,trainer.batch_size=20"
    assert read_json(diverged / "metrics.json")["diverged"] is True
    assert read_json(diverged / "failed.json")["exit_code"] == 3
    points = {tuple(p["values"].values()): p for p in read_json(sweep_dir / "summary.json")["points"]}
    assert points[("20", "0.05")]["runs_ok"] == 1
    assert points[("1000", "0.05")]["failed"] == 1 and points[("20", huge)]["failed"] == 1
    assert "Model diverged" in result.out and "does not fit" in result.out

    again = cnnexp("sweep", "trainer.batch_size=20,1000", "optimizer.lr=0.05,1e12", "model.activation=relu",
                   "model.init=pytorch", "trainer.eval_every=1", "trainer.epochs=1", "dataset.limit=40", "optimizer=sgd",
                   f"sweep.dir={sweep_dir}")
    assert "all 4 points already done" in again.out  # a recorded failure is a result, not retried


def test_joblib_launcher_gives_the_same_numbers(cnnexp, workdir):
    args = ("optimizer.lr=0.1,0.01", "trainer.epochs=1", *QUICK)
    assert cnnexp("sweep", *args).code == 0
    basic = only_run(workdir / "outputs" / "sweep")
    result = cnnexp("sweep", *args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.code == 0, result.err
    parallel = next(p for p in (workdir / "outputs" / "sweep").iterdir() if p != basic)
    assert runs_in(parallel) == runs_in(basic)
    for run in runs_in(basic):
        assert read_json(parallel / run / "metrics.json")["test_error"] == \
            read_json(basic / run / "metrics.json")["test_error"]
        assert read_json(parallel / run / "metrics.json")["best_val_error"] == \
            read_json(basic / run / "metrics.json")["best_val_error"]


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (("sweep=nope",), "unknown sweep 'nope'; choose one of: batch_size, lr, nkerns, shuffle_batch_size"),
    (("seeds=0",), "seeds=0 must be an integer >= 1"),
    (("seeds=2", "seed=1,2"), "give either seeds=N or seed=..., not both"),
    (("sweep.metric=accuracy",), "sweep.metric='accuracy' is not a run metric; choose one of: best_val_error, test_error"),
    (("trainer.epoch=1,2",), "unknown key 'trainer.epoch'; did you mean trainer.epochs?"),
    (("+trainer.epoch=1,2",), "+trainer.epoch=1 adds a key that no part of cnnexp reads; did you mean trainer.epochs=1?"),
    (("model=lenet,nope",), "unknown model 'nope'"),
    (("optimizer.lr=interval(0.1,1)",), "only lists (a,b,c), choice() and range() can be swept"),
    (("sweep.dir=/etc/passwd",), "sweep.dir=/etc/passwd is a file"),
    (("hydra.sweep.dir=x",), "the sweep folder is set with sweep.dir=<folder>, not hydra.sweep.dir"),
    (("summarize",), "dir=None is not a folder"),
    (("summarize", "dir=missing"), "dir=missing is not a folder"),
    (("summarize", "dri=x"), "unknown key 'dri'; did you mean dir?"),
    (("summarize", "dir=."), "holds no run folders"),
])
def test_bad_input_is_one_line_exit_2(cnnexp, workdir, args, message):
    result = cnnexp("sweep", *args)
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: ") and message in result.err and result.err.count("\n") == 1
    assert not (workdir / "outputs").exists()


def test_help_lists_presets(cnnexp):
    result = cnnexp("sweep", "--help")
    assert result.code == 0
    assert "sweep: batch_size, lr, nkerns, shuffle_batch_size" in result.out
