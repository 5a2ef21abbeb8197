"""cnnexp train end to end: the run folder, TensorBoard, checkpoints, resume, divergence."""

import csv
import re

import pytest
import torch
from conftest import only_run, read_json
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

QUICK = ("dataset.limit=80", "trainer.batch_size=20")  # 80 training faces, 4 steps an epoch


def history_rows(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_olivetti_run_folder(cnnexp, workdir):
    result = cnnexp("train", "dataset=olivetti", "model=lenet", "trainer.epochs=3")
    assert result.code == 0, result.err
    run = only_run(workdir / "outputs" / "train")

    rows = history_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert set(rows[0]) == {"epoch", "step", "train_loss", "val_loss", "val_error", "test_error", "lr",
                            "images_per_second"}
    assert rows[-1]["step"] == str(3 * 320 // 40)

    metrics = read_json(run / "metrics.json")
    for key in ("best_val_error", "best_epoch", "best_step", "test_error", "epochs_run", "train_seconds",
                "images_per_second", "params"):
        assert metrics[key] is not None, key
    assert metrics["epochs_run"] == 3 and metrics["diverged"] is False
    assert metrics["best_val_error"] == min(float(r["val_error"]) for r in rows)
    best_row = next(r for r in rows if int(r["step"]) == metrics["best_step"])
    assert float(best_row["test_error"]) == metrics["test_error"]

    for which in ("last", "best"):
        ckpt = torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)
        assert ckpt["config"]["model"]["nkerns"] == [20, 50]
        assert len(ckpt["class_names"]) == 40 and ckpt["input_shape"] == [1, 57, 47]
        assert {"model", "optimizer", "rng", "normalization", "epoch", "step"} <= set(ckpt)
    assert (run / "config.yaml").exists()

    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/loss_smooth", "val/loss", "val/error", "test/error", "lr",
            "perf/images_per_second"} <= set(tags["scalars"])
    assert "inputs/train" in tags["images"]
    assert len(events.Scalars("val/error")) == 3

    assert "Best validation error " in result.out and "), test error " in result.out
    assert str(run.name) in result.out
    assert_log_is_the_console(run / "train.log", result.out, rows=3)


def assert_log_is_the_console(log_path, console: str, rows: int) -> None:
    """train.log holds what the console printed, plain: the header, the evaluation rows, the closing lines."""
    log = log_path.read_text()
    assert "\x1b" not in log and "cnnexp train" in log and "run folder" in log
    evaluations = [line for line in log.splitlines() if re.match(r"\s+\d+\s+\d+\s", line)]
    assert len(evaluations) == rows
    for line in [*evaluations, *log.splitlines()[-2:]]:
        assert line.rstrip() in console


@pytest.mark.parametrize("when", ["epoch", "every 2 steps"])
def test_best_pt_keeps_the_best_evaluation_when_later_ones_do_not_improve(cnnexp, workdir, when):
    """With lr=0 the weights never move, so the first evaluation stays the best: best.pt must still be that
    evaluation's checkpoint after every later last.pt (at an epoch's end best.pt is written as a link to
    the epoch's last.pt, which later saves replace by a rename, never in place)."""
    every = ["trainer.eval_every=2"] if when != "epoch" else []
    result = cnnexp("train", *QUICK, "optimizer.lr=0", "trainer.epochs=3", *every, "hydra.run.dir=run")
    assert result.code == 0, result.err
    checkpoints = workdir / "run" / "checkpoints"
    best = torch.load(checkpoints / "best.pt", weights_only=True)
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    metrics = read_json(workdir / "run" / "metrics.json")
    assert metrics["best_step"] == (2 if every else 4) == best["step"] == best["train_state"]["best_step"]
    assert last["step"] == 12 and best["epoch"] == (0 if every else 1)


def test_hparams_written(cnnexp, workdir):
    assert cnnexp("train", "trainer.epochs=1", *QUICK).code == 0
    run = only_run(workdir / "outputs" / "train")
    plugins = EventAccumulator(str(run)).Reload().PluginTagToContent("hparams")
    assert plugins, "hparams summary missing"


def final_weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


RESUME_CFG = (*QUICK, "trainer.shuffle=true", "model.dropout=0.5", "augmentation=patch", "scheduler=staircase",
              "scheduler.step_size=1", "optimizer=momentum")


def test_resume_gives_identical_weights(cnnexp, workdir):
    assert cnnexp("train", *RESUME_CFG, "trainer.epochs=4", "hydra.run.dir=straight").code == 0
    assert cnnexp("train", *RESUME_CFG, "trainer.epochs=2", "hydra.run.dir=first").code == 0
    result = cnnexp("train", "trainer.resume=first", "trainer.epochs=4", "hydra.run.dir=resumed")
    assert result.code == 0, result.err
    header = {line.split("  ")[0].strip(): line for line in result.out.splitlines()[:12]}
    assert "resumed from  first (after epoch 2, step 8)" in header["resumed from"]
    assert "trainer       epochs 3-4 of 4  batch" in header["trainer"]
    assert result.out.splitlines()[-1].startswith("4 epochs in ")
    assert_same_weights(final_weights(workdir / "straight"), final_weights(workdir / "resumed"))
    assert len(history_rows(workdir / "resumed")) == 4
    assert read_json(workdir / "resumed" / "metrics.json") | {"train_seconds": 0, "images_per_second": 0} == \
        read_json(workdir / "straight" / "metrics.json") | {"train_seconds": 0, "images_per_second": 0}


def test_resume_from_mid_epoch_checkpoint(cnnexp, workdir, monkeypatch):
    """A crash after a `checkpoint_every` save, mid-epoch, resumes to the same weights."""
    from cnnexp.engine.trainer import Trainer

    assert cnnexp("train", *RESUME_CFG, "trainer.epochs=3", "hydra.run.dir=straight").code == 0
    original_step = Trainer.train_step

    def crash_at_step_7(self, inputs, labels):
        if self.state.step == 6:
            raise RuntimeError("simulated crash")
        return original_step(self, inputs, labels)

    monkeypatch.setattr(Trainer, "train_step", crash_at_step_7)
    crashed = cnnexp("train", *RESUME_CFG, "trainer.epochs=3", "trainer.checkpoint_every=3",
                     "hydra.run.dir=crashed")
    assert crashed.code == 1
    assert crashed.err.strip() == "internal error: RuntimeError: simulated crash (set CNNEXP_DEBUG=1 for the traceback)"
    ckpt = torch.load(workdir / "crashed" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["train_state"]["batch_in_epoch"] == 2
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = cnnexp("train", "trainer.resume=crashed", "hydra.run.dir=resumed")
    assert resumed.code == 0 and "resumed from  crashed (after epoch 1, step 6, mid-epoch)" in resumed.out
    assert_same_weights(final_weights(workdir / "straight"), final_weights(workdir / "resumed"))


def test_resume_refuses_group_change(cnnexp, workdir):
    first = cnnexp("train", *QUICK, "trainer.epochs=1", "hydra.run.dir=first")
    assert first.code == 0 and "trainer       1 epoch  batch" in first.out
    assert first.out.splitlines()[-1].startswith("1 epoch in ")
    result = cnnexp("train", "trainer.resume=first", "model=lenet5")
    assert result.code == 2 and "cannot change 'model' when resuming" in result.err


def test_resume_accepts_the_same_command_again(cnnexp, workdir):
    """A sweep resumes a run by repeating its command line, group choices included."""
    command = ("experiment=olivetti_lenet", "model=lenet", *QUICK)
    assert cnnexp("train", *command, "trainer.epochs=1", "hydra.run.dir=first").code == 0
    result = cnnexp("train", *command, "trainer.epochs=2", "trainer.resume=first", "hydra.run.dir=second")
    assert result.code == 0, result.err
    assert read_json(workdir / "second" / "metrics.json")["epochs_run"] == 2


def test_divergence_stops_with_exit_3(cnnexp, workdir):
    result = cnnexp("train", *QUICK, "trainer.epochs=3", "trainer.eval_every=1", "optimizer.lr=1e12",
                    "model.activation=relu", "model.init=pytorch", "hydra.run.dir=run")
    assert result.code == 3
    assert "Model diverged with loss = nan at epoch 1, step" in result.err
    assert (workdir / "run" / "train.log").read_text().splitlines()[-1] in result.err
    metrics = read_json(workdir / "run" / "metrics.json")
    assert metrics["diverged"] is True
    assert (workdir / "run" / "checkpoints" / "best.pt").exists()


def test_tutorial_early_stopping_stops_when_patience_runs_out(cnnexp, workdir):
    result = cnnexp("train", *QUICK, "trainer.epochs=50", "trainer.early_stopping=tutorial",
                    "trainer.patience_iterations=6", "trainer.patience_increase=1", "hydra.run.dir=run")
    assert result.code == 0, result.err
    metrics = read_json(workdir / "run" / "metrics.json")
    assert metrics["stopped_early"] and metrics["steps"] == 6


def test_epoch_patience_rule():
    from cnnexp.engine.early_stopping import EpochPatience

    rule = EpochPatience(patience=2)
    rule.update(True, 0.5, 1.0, step=10, epoch=1)
    rule.update(False, 0.6, 0.5, step=20, epoch=2)
    assert not rule.should_stop(20, 2)
    assert rule.should_stop(30, 3)


def test_tutorial_rule_extends_patience_only_on_significant_improvement():
    from cnnexp.engine.early_stopping import TutorialPatience

    rule = TutorialPatience(patience=100, patience_increase=2, improvement_threshold=0.995)
    rule.update(True, 0.0999, best_before=0.1, step=80, epoch=1)  # 0.1 % better: not significant
    assert rule.patience == 100
    rule.update(True, 0.09, best_before=0.1, step=80, epoch=1)
    assert rule.patience == 160 and not rule.should_stop(159, 2) and rule.should_stop(160, 2)


def test_multirun_makes_one_folder_per_job(cnnexp, workdir):
    result = cnnexp("train", "-m", "optimizer=sgd", "optimizer.lr=0.1,0.01", "trainer.epochs=1", *QUICK)
    assert result.code == 0, result.err
    sweep = only_run(workdir / "outputs" / "multirun")
    lrs = sorted(read_json(sweep / job / "metrics.json")["params"] and
                 torch.load(sweep / job / "checkpoints/last.pt", weights_only=True)["config"]["optimizer"]["lr"]
                 for job in ("0", "1"))
    assert lrs == [0.01, 0.1]
    summary = result.out[result.out.index("cnnexp train -m: 2 runs in outputs/multirun/"):].splitlines()
    assert summary[1] == "every run: optimizer=sgd trainer.epochs=1 dataset.limit=80 trainer.batch_size=20"
    rows = [line.split() for line in summary[2:5]]
    assert rows[0][:2] == ["job", "overrides"]
    assert [row[:2] for row in rows[1:]] == [["0", "optimizer.lr=0.1"], ["1", "optimizer.lr=0.01"]]
    for job, row in zip(("0", "1"), rows[1:]):
        metrics = read_json(sweep / job / "metrics.json")
        assert row[2:] == [f"{100 * metrics['best_val_error']:.2f}", "%", f"{100 * metrics['test_error']:.2f}", "%",
                           "done"]
    assert summary[5].startswith("lowest validation error: job ")
    assert max(map(len, summary)) <= 80


def test_cfg_job_prints_config_and_writes_nothing(cnnexp, workdir):
    result = cnnexp("train", "model.nkerns=[5,10]", "--cfg", "job")
    assert result.code == 0
    assert "nkerns:\n  - 5\n  - 10" in result.out
    assert not (workdir / "outputs").exists()


def test_help_lists_commands_and_groups(cnnexp):
    top = cnnexp("--help")
    assert "train" in top.out
    groups = cnnexp("train", "--help")
    assert "optimizer: adadelta, adam, momentum, sgd" in groups.out
    assert "scheduler: cosine, none, plateau, staircase, step" in groups.out


@pytest.mark.parametrize("override, message", [
    (("dataset=nope",), "unknown dataset 'nope'; choose one of:"),
    (("optimizer=rmsprop",), "unknown optimizer 'rmsprop'"),
    (("trainer.epoch=3",), "unknown key 'trainer.epoch'; did you mean trainer.epochs?"),
    (("+trainer.epoch=3",), "+trainer.epoch=3 adds a key that no part of cnnexp reads; did you mean trainer.epochs=3?"),
    (("seeed=1",), "unknown key 'seeed'; did you mean seed?"),
    (("+trainer.foo=1",), "+trainer.foo=1 adds a key that no part of cnnexp reads; `cnnexp train --help` lists"),
    (("+dataset.rooot=x",), "+dataset.rooot=x adds a key that no part of cnnexp reads; did you mean dataset.root=x?"),
    (("optimizer.momentum=0.9",), "a constructor argument the config lacks is added with +optimizer.momentum=..."),
    (("trainer.epochs=abc",), "trainer.epochs=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    (("trainer.shuffle=maybe",), "trainer.shuffle=maybe: Value 'maybe' is not a valid bool"),
    (("trainer.batch_size=1000",), "trainer.batch_size=1000 does not fit the training split of 320 images"),
    (("model.nkerns=[20,50,60,70]",), "does not fit 57x47 inputs"),
    (("model.nkerns=[]",), "model.nkerns=[] must list at least one"),
    (("+model.hiden=10",), "+model.hiden=10 adds a key that no part of cnnexp reads; did you mean model.hidden=10?"),
    (("dataset=mnist", "dataset.root=/no/such/dir", "dataset.download=false"), "MNIST not found under /no/such/dir"),
    (("dataset.root=/no/such.gif",), "Olivetti GIF not found at /no/such.gif"),
    (("trainer.resume=/no/such/run",), "/no/such/run does not exist"),
    (("augmentation=patch", "augmentation.crop_size=[80,80]"), "must fit inside the 57x47 images"),
])
def test_bad_input_is_one_line_exit_2(cnnexp, workdir, override, message):
    result = cnnexp("train", *override)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.err
    assert not any((workdir / "outputs" / "train").glob("*")) if (workdir / "outputs" / "train").exists() else True


def test_bad_input_in_a_real_process_has_no_traceback(cnnexp_process):
    result = cnnexp_process("train", "model=resnet9000")
    assert result.code == 2
    assert result.err.strip().startswith("error: unknown model 'resnet9000'")
    assert "Traceback" not in result.err + result.out


def test_existing_run_folder_is_never_overwritten(cnnexp, workdir):
    assert cnnexp("train", *QUICK, "trainer.epochs=1", "hydra.run.dir=run").code == 0
    before = (workdir / "run" / "metrics.json").read_bytes()
    result = cnnexp("train", *QUICK, "trainer.epochs=2", "hydra.run.dir=run")
    assert result.code == 2 and "already holds a run" in result.err
    assert (workdir / "run" / "metrics.json").read_bytes() == before


def test_failed_run_keeps_a_users_own_folder(cnnexp, workdir):
    mine = workdir / "mine"
    mine.mkdir()
    (mine / "notes.log").write_text("my notes")
    result = cnnexp("train", "trainer.batch_size=1000", "hydra.run.dir=mine")
    assert result.code == 2
    assert (mine / "notes.log").read_text() == "my notes"


def test_failed_run_leaves_no_folder_of_its_own(cnnexp, workdir):
    assert cnnexp("train", "trainer.batch_size=1000").code == 2
    assert not (workdir / "outputs").exists()
