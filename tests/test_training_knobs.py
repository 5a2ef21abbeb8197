"""The training knobs of the modern recipes: label smoothing, an EMA of the weights, a learning-rate
warm-up, no weight decay on biases and norm layers, and a model with several convs a stage."""

import copy
import io
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import read_json
from test_train import QUICK, assert_same_weights, history_rows
from omegaconf import OmegaConf
from rich.console import Console

from cnnexp.runner.compose import compose_config
from cnnexp.data.image_data import ImageData, Split
from cnnexp.engine.assemble import assemble_training
from cnnexp.engine.build import build_optimizer, build_scheduler
from cnnexp.engine.ema import WeightAverage
from cnnexp.engine.loggers import ConsoleReporter
from cnnexp.engine.trainer import Trainer
from cnnexp.models import create_model
from cnnexp.models.freeze import parameter_groups


def tiny_data(n: int = 16) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=generator)
    split = Split(images, torch.arange(n) % 4)
    return ImageData({"train": split, "val": split, "test": split}, ["a", "b", "c", "d"])


def tiny_trainer(tmp_path, *overrides: str) -> Trainer:
    cfg = compose_config("train", ["model=lenet", "model.nkerns=[2,3]", "model.hidden=8", "model.kernel_size=3",
                                   "device=cpu", "trainer.batch_size=8", *overrides])
    return Trainer(assemble_training(cfg, tiny_data()), tmp_path, ConsoleReporter(Console(quiet=True)))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_is_the_training_loss(tmp_path, smoothing):
    trainer = tiny_trainer(tmp_path, f"trainer.label_smoothing={smoothing}")
    with torch.no_grad():  # confident logits, where smoothing changes the loss most
        trainer.model.classifier[-1].weight.normal_(0, 10)
    split = trainer.data.split("train")
    inputs, labels = trainer.pipeline(split.images[:8], train=False), split.labels[:8]
    expected = F.cross_entropy(copy.deepcopy(trainer.model).train()(inputs), labels, label_smoothing=smoothing)
    assert trainer.train_step(inputs, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    if smoothing:  # the smoothed loss of the same logits is not the plain one
        assert expected.item() != pytest.approx(F.cross_entropy(trainer.model(inputs), labels).item(), rel=1e-3)


def test_ema_is_what_validation_measures_and_checkpoints_hold(tmp_path):
    trainer = tiny_trainer(tmp_path, "trainer.ema_decay=0.9", "trainer.epochs=3")
    trainer.fit()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    averaged, trained = ckpt["model"], ckpt["trained_model"]
    assert_same_weights(averaged, trainer.ema.module.state_dict())
    assert_same_weights(trained, trainer.model.state_dict())
    conv = "features.0.weight"
    assert not torch.equal(averaged[conv], trained[conv])
    # the average lies between the start and the trained weights' path: closer to the start than the end is
    start = tiny_trainer(tmp_path / "fresh").model.state_dict()[conv]
    assert (averaged[conv] - start).norm() < (trained[conv] - start).norm()


def test_ema_decay_warms_up_then_holds():
    average = WeightAverage(torch.nn.Linear(2, 2), 0.999)
    assert average.decay_at(0) == pytest.approx(0.1)
    assert average.decay_at(100) == pytest.approx(101 / 110)
    assert average.decay_at(10**6) == 0.999


def test_ema_run_resumes_to_identical_weights(cnnexp, workdir):
    common = (*QUICK, "trainer.ema_decay=0.95", "trainer.label_smoothing=0.1", "scheduler=staircase",
              "scheduler.warmup_epochs=1")
    assert cnnexp("train", *common, "trainer.epochs=3", "hydra.run.dir=straight").code == 0
    assert cnnexp("train", *common, "trainer.epochs=1", "hydra.run.dir=first").code == 0
    assert cnnexp("train", "trainer.resume=first", "trainer.epochs=3", "hydra.run.dir=resumed").code == 0
    for key in ("model", "trained_model"):
        straight = torch.load(workdir / "straight/checkpoints/last.pt", weights_only=True)[key]
        resumed = torch.load(workdir / "resumed/checkpoints/last.pt", weights_only=True)[key]
        assert_same_weights(straight, resumed)
    assert read_json(workdir / "straight/metrics.json")["test_error"] == \
        read_json(workdir / "resumed/metrics.json")["test_error"]


def test_eval_reads_the_averaged_weights(cnnexp, workdir):
    assert cnnexp("train", *QUICK, "trainer.ema_decay=0.9", "trainer.epochs=2", "hydra.run.dir=run").code == 0
    result = cnnexp("eval", "run=run", "which=best")
    assert result.code == 0, result.err
    report = read_json(workdir / "run" / "eval" / "test" / "eval.json")
    assert report["error"] == pytest.approx(read_json(workdir / "run" / "metrics.json")["test_error"])


def test_warmup_raises_the_learning_rate_linearly(cnnexp, workdir):
    result = cnnexp("train", *QUICK, "optimizer.lr=0.3", "scheduler.warmup_epochs=2", "trainer.epochs=4",
                    "hydra.run.dir=run")
    assert result.code == 0, result.err
    lrs = [float(row["lr"]) for row in history_rows(workdir / "run")]
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_warmup_then_cosine_decays_from_the_full_rate():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    cfg = OmegaConf.create({"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 4, "eta_min": 0.0,
                            "warmup_epochs": 1})
    scheduler = build_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.5, 1.0, 0.8535534, 0.5, 0.1464466, 0.0], abs=1e-6)


def test_no_decay_for_biases_and_norm_weights():
    model = create_model("small_cnn", (1, 16, 16), 3)
    cfg = OmegaConf.create({"_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 0.01})
    optimizer = build_optimizer(cfg, parameter_groups(model, 1.0, 0.1, decay_norm_bias=False))
    decayed, not_decayed = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and not_decayed["weight_decay"] == 0.0
    one_dim = {id(p) for p in model.parameters() if p.ndim == 1}
    assert {id(p) for p in not_decayed["params"]} == one_dim
    assert not one_dim & {id(p) for p in decayed["params"]}
    assert len(build_optimizer(cfg, parameter_groups(model, 1.0, 0.1)).param_groups) == 1


def test_small_cnn_stacks_convs_per_stage():
    model = create_model("small_cnn", (1, 28, 28), 10, widths=[8, 16], stem_stride=1, convs_per_stage=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 8), (8, 8), (8, 16), (16, 16)]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("override, message", [
    ("trainer.label_smoothing=1.0", "trainer.label_smoothing=1.0 must be a number in [0, 1)"),
    ("trainer.ema_decay=-0.5", "trainer.ema_decay=-0.5 must be a number in [0, 1) or null"),
    ("scheduler.warmup_epochs=-1", "scheduler.warmup_epochs=-1 must be an integer >= 0"),
    ("trainer.best_by=accuracy", "trainer.best_by=accuracy is not one of: val_error, val_loss, val_error_then_loss"),
])
def test_bad_knob_values_are_one_line_errors(cnnexp, workdir, override, message):
    result = cnnexp("train", override)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_warmup_with_plateau_is_refused(cnnexp, workdir):
    result = cnnexp("train", *QUICK, "scheduler=plateau", "scheduler.warmup_epochs=2")
    assert result.code == 2
    assert "scheduler.warmup_epochs does not combine with scheduler=plateau" in result.err
    assert not (workdir / "outputs").exists() or not any((workdir / "outputs").rglob("last.pt"))


@pytest.mark.parametrize("best_by, expected", [
    ("val_error", [True, False, False, False]),  # ties keep the earlier model, as the tutorials
    ("val_error_then_loss", [True, True, False, False]),
    ("val_loss", [False, True, False, True]),
])
def test_best_by_decides_which_validation_makes_best_pt(best_by, expected):
    from cnnexp.engine.records import TrainState, is_better

    best = TrainState(best_val_error=0.05, best_val_loss=0.5)
    candidates = [(0.025, 0.9), (0.05, 0.4), (0.05, 0.6), (0.075, 0.3)]  # (val error, val loss)
    assert [is_better(best, best_by, error, loss) for error, loss in candidates] == expected


def test_best_by_val_loss_run_keeps_the_lowest_loss_checkpoint(cnnexp, workdir):
    assert cnnexp("train", *QUICK, "trainer.best_by=val_loss", "trainer.epochs=3", "hydra.run.dir=run").code == 0
    rows = history_rows(workdir / "run")
    best = min(rows, key=lambda row: float(row["val_loss"]))
    assert read_json(workdir / "run" / "metrics.json")["best_epoch"] == int(best["epoch"])


def test_ema_averages_weights_and_norm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, 0.5)
    start = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(4 if tensor.is_floating_point() else 7)
    average.update(model, step=10**6)  # decay 0.5: halfway
    for key, value in average.module.state_dict().items():
        expected = start[key] + 2 if value.is_floating_point() else start[key] + 7
        assert torch.allclose(value, expected), key


def test_curves_star_the_checkpoint_best_by_chose():
    """The test split is scored at each new best, so the last row with a test error is best.pt's."""
    from cnnexp.engine.curves import best_row

    rows = [{"val_error": 0.1, "test_error": 0.1}, {"val_error": 0.0, "test_error": 0.05},
            {"val_error": 0.025, "test_error": None}, {"val_error": 0.0, "test_error": 0.0},
            {"val_error": 0.0, "test_error": None}]
    assert best_row(rows) == 3
    assert best_row([{"val_error": 0.2}, {"val_error": 0.1}, {"val_error": 0.1}]) == 1  # no test column


def test_header_says_what_training_does_whatever_the_choices_are_called(cnnexp, workdir):
    """An experiment's augmentation block applies on top of `augmentation=none`: the header shows it."""
    result = cnnexp("train", *QUICK, "trainer.epochs=1", "augmentation=none", "augmentation.rotation=10",
                    "augmentation.flip=true", "trainer.label_smoothing=0.1", "trainer.ema_decay=0.9",
                    "scheduler=cosine", "scheduler.warmup_epochs=1", "hydra.run.dir=run")
    assert result.code == 0, result.err
    header = " ".join(result.out.split())
    assert "augmentation mirror, rotation 10°, fill nearest" in header
    assert "CosineAnnealingLR after 1 warm-up epoch" in header
    assert "label smoothing 0.1 EMA 0.9" in header
    plain = cnnexp("train", *QUICK, "trainer.epochs=1", "hydra.run.dir=plain")
    assert "augmentation none (whole image)" in " ".join(plain.out.split())


@pytest.mark.parametrize("log_every", [10, 1000])
def test_the_progress_bar_shows_the_loss_and_count_whatever_log_every(tmp_path, log_every):
    """The bar as a terminal draws it (at the start and end of each epoch): a real loss from the first step
    on, never `nan`, and the batches done, even when the loss is read less often than once an epoch."""
    console = Console(file=io.StringIO(), force_terminal=True, record=True, width=120)
    cfg = compose_config("train", ["model=lenet", "model.nkerns=[2,3]", "model.hidden=8", "model.kernel_size=3",
                                   "device=cpu", "trainer.batch_size=8", "trainer.epochs=3",
                                   f"trainer.log_every={log_every}"])
    Trainer(assemble_training(cfg, tiny_data()), tmp_path, ConsoleReporter(console)).fit()
    bars = re.findall(r"epoch (\d) \S+ (\d)/2 loss (\S+)", console.export_text())
    assert bars[0] == ("1", "0", "-")  # nothing read before the first step
    assert "nan" not in console.export_text()
    assert all(math.isfinite(float(loss)) for epoch, done, loss in bars if (epoch, done) != ("1", "0")), bars
    assert {(epoch, done) for epoch, done, _ in bars if done == "2"} == {("1", "2"), ("2", "2"), ("3", "2")}
