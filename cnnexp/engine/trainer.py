"""The training loop: one function per epoch, validation every `eval_every` steps, checkpoints,
early stopping, divergence detection and a clean stop on SIGINT/SIGTERM.

The trainer is told a config, an in-memory dataset and a run folder; it knows nothing of the CLI.
"""

import errno
import math
import shlex
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cnnexp.data.image_data import ImageData
from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline
from cnnexp.data.stream import make_batches
from cnnexp.engine.build import (build_optimizer, build_scheduler, seed_everything, select_device, set_threads,
                                 to_plain)
from cnnexp.engine.checkpoint import FORMAT, CheckpointWriter, restore_rng, rng_state
from cnnexp.engine.distributed import Discard, Group
from cnnexp.engine.early_stopping import make_early_stopping
from cnnexp.engine.ema import WeightAverage
from cnnexp.engine.evaluation import evaluate, evaluate_shard
from cnnexp.engine.interrupts import StopRequests
from cnnexp.engine.precision import autocast_forward, compile_model, resolve_precision
from cnnexp.engine.loggers import ConsoleReporter, CurvesPlot, HistoryCSV, TensorBoardLogger
from cnnexp.utils.files import write_json_atomic
from cnnexp.utils.errors import Diverged, Interrupted, PeerLost, Pruned, UserError
from cnnexp.models import create_model, model_kwargs
from cnnexp.models.freeze import apply_freeze, parameter_groups
from cnnexp.models.weights import choose_normalization, start_weights

SMOOTHING = 0.9  # weight of the past in the moving-average training loss


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry to resume exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    batch_in_epoch: int = 0
    best_val_error: float = math.inf
    best_val_loss: float = math.inf  # of the best checkpoint (trainer.best_by)
    best_epoch: int | None = None
    best_step: int | None = None
    test_error: float | None = None
    train_seconds: float = 0.0
    images_seen: int = 0
    smooth_loss: float | None = None
    interval_loss_sum: float = 0.0  # training loss since the last validation (its history row's train_loss)
    interval_batches: int = 0
    history: list = field(default_factory=list)


class Trainer:
    def __init__(self, cfg, data: ImageData, run_dir: Path, reporter: ConsoleReporter | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.reporter = reporter or ConsoleReporter()
        self.group = Group()  # rank 0 of 1 unless started by torchrun
        self.device = select_device(cfg.device)
        self.precision = resolve_precision(cfg.device, self.device)
        set_threads(cfg.device)
        seed_everything(int(cfg.seed))
        self.data = data.to(self.device)
        self.class_names = data.class_names
        train_split = self.data.split("train")
        self._check_batch_size(len(train_split))

        augmentation = Augmentation(cfg.augmentation, data.image_shape)
        self.input_shape = augmentation.out_shape
        self.model = create_model(cfg.model.name, self.input_shape, data.num_classes, **model_kwargs(cfg.model))
        self.weights = start_weights(self.model, cfg.model) if not cfg.trainer.get("resume") else None
        self.freezing = apply_freeze(self.model, cfg.model.get("freeze"), cfg.model.get("trainable"), cfg.model.name)
        self.normalizer = self._normalizer(train_split, data.meta.get("channel_stats"))
        channels_last = bool(cfg.device.channels_last)
        self.pipeline = Pipeline(augmentation, self.normalizer, channels_last)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format)
        compile_model(autocast_forward(self.model, self.precision), bool(cfg.device.get("compile")))
        self.scaler = self.precision.grad_scaler()
        sync_bn = bool(cfg.trainer.get("sync_bn", False))
        self.batchnorm = self.group.batchnorm_mode(self.model, self.device, sync_bn)
        self.train_model = self.group.wrap(self.model, self.device, sync_bn)  # what train_step calls
        self.label_smoothing = float(cfg.trainer.get("label_smoothing") or 0.0)  # read once, not every step
        ema_decay = cfg.trainer.get("ema_decay")
        self.ema = WeightAverage(self.model, ema_decay) if ema_decay else None
        self.optimizer = build_optimizer(cfg.optimizer, parameter_groups(
            self.model, float(cfg.optimizer.get("head_lr_mult", 1.0)), float(cfg.optimizer.lr),
            bool(cfg.optimizer.get("decay_norm_bias", True))))
        self.scheduler = build_scheduler(cfg.scheduler, self.optimizer)

        self.train_batches = make_batches(train_split, cfg.trainer.batch_size, bool(cfg.trainer.shuffle),
                                          shard=(self.group.rank, self.group.world_size))
        self.eval_batch_size = int(cfg.trainer.eval_batch_size)
        self.generator = torch.Generator(device=self.device).manual_seed(int(cfg.seed))  # the epochs' orders
        self.augment_generator = self._augment_generator(int(cfg.seed))
        self.log_every = int(cfg.trainer.get("log_every") or 1)
        self.pending_losses: list[torch.Tensor] = []  # on the device, read every log_every steps
        self.global_batch = 0  # images in the current step over all processes
        self.epoch_in_progress = 0
        self.stop_agreed = False  # data-parallel: a rank was asked to stop, and all ranks know it
        self.evaluation_hooks: list = []  # f(history row) after each evaluation; may raise Pruned (a search)
        self.stopper = make_early_stopping(cfg.trainer)
        self.state = TrainState()
        self.epoch_order: torch.Tensor | None = None
        self.stop_reason: str | None = None
        self.stop_requests = StopRequests()
        self.checkpoints = CheckpointWriter()  # its `written`: the step of the last.pt this run wrote

    def _normalizer(self, train_split, stored_stats) -> Normalizer:
        """The starting weights' normalisation (model.preprocess=weights), else dataset.normalize's."""
        stats = choose_normalization(self.weights, self.cfg.model, self.input_shape[0])
        if stats is not None:
            return Normalizer(**stats)
        return Normalizer.fit(self.cfg.dataset.normalize, train_split.images, stored_stats)

    def _augment_generator(self, seed: int) -> torch.Generator:
        """One process draws augmentations and epoch orders from one generator (as always). Data-parallel
        processes share the order's generator but augment their own images with their own generator
        (and dropout masks from their own seed), so no two ranks draw the same random views."""
        if not self.group.active:
            return self.generator
        torch.manual_seed(seed + 7919 * self.group.rank)
        return torch.Generator(device=self.device).manual_seed(seed + 7919 * self.group.rank)

    def _check_batch_size(self, n_train: int) -> None:
        batch_size = int(self.cfg.trainer.batch_size)
        if not 1 <= batch_size <= n_train:
            raise UserError(
                f"trainer.batch_size={batch_size} does not fit the training split of {n_train} images; "
                f"use 1 to {n_train}"
            )

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights validation measures and checkpoints offer to eval/predict: the average with EMA."""
        return self.ema.module if self.ema else self.model

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        trained = {"trained_model": self.model.state_dict()} if self.ema else {}
        return {
            "format": FORMAT,
            "model": self.eval_model.state_dict(),
            **trained,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "epoch_order": self.epoch_order.cpu() if self.epoch_order is not None else None,
            "train_state": asdict(self.state),
            "early_stopping": self.stopper.state_dict(),
            "rng": rng_state(self.generator),
            "config": to_plain(self.cfg),
            "class_names": list(self.class_names),
            "normalization": self.normalizer.state_dict(),
            "input_shape": list(self.input_shape),
            "image_shape": list(self.data.image_shape),
            "world_size": self.group.world_size,
            "precision": self.precision.name,
            "grad_scaler": self.scaler.state_dict() if self.scaler else None,
        }

    def save(self, which: str) -> None:
        self._flush_losses()
        if not self.group.is_main:
            return
        self.checkpoints.save(self.checkpoint(), self.run_dir / "checkpoints" / f"{which}.pt", self.state.step)

    def load(self, ckpt: dict) -> None:
        """Continue from a checkpoint of the same configuration (resume)."""
        self.model.load_state_dict(ckpt.get("trained_model", ckpt["model"]))
        if self.ema:
            self.ema.module.load_state_dict(ckpt["model"])
        self.normalizer = self.pipeline.normalizer = Normalizer(**ckpt["normalization"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler and ckpt["scheduler"]:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(**ckpt["train_state"])
        self.stopper.load_state_dict(ckpt["early_stopping"])
        order = ckpt["epoch_order"]
        self.epoch_order = order.to(self.device) if order is not None and self.state.batch_in_epoch else None
        restore_rng(ckpt["rng"], self.generator)
        if self.scaler and ckpt.get("grad_scaler"):
            self.scaler.load_state_dict(ckpt["grad_scaler"])

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict:
        with self.stop_requests:  # before anything is written: a Ctrl-C from now on stops at a step
            self._open_loggers()
            if self.weights is not None and self.group.is_main:
                write_json_atomic(self.weights.record(), self.run_dir / "weights.json")
            try:
                self._log_input_grid()
                while self.state.epoch < int(self.cfg.trainer.epochs) and self.stop_reason is None:
                    if self.group.active:
                        self.stop_agreed = self.group.any(self.stop_requests.requested or self.stop_agreed)
                    self._stop_if_requested()
                    self.train_one_epoch()
                return self.finish(diverged=False)
            except PeerLost as exc:
                raise PeerLost(f"{exc}; the run stops: {self.kept()}") from exc
            except Diverged:
                self.finish(diverged=True)
                raise
            except Interrupted:
                self.finish(diverged=False, interrupted=True)
                raise
            except Pruned:
                self.finish(diverged=False, pruned=True)
                raise
            except UserError as exc:  # a data file damaged since the start, a full disk: say what is kept
                raise UserError(f"{exc}; {self.kept()}") from exc
            except RuntimeError as exc:  # inside DDP's backward: a rank died or timed out
                if not self.group.is_peer_failure(exc):
                    raise
                raise PeerLost(f"{self.group.lost(exc)}; the run stops: {self.kept()}") from exc
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise UserError(f"no space left for the run folder {self.run_dir} ({exc.strerror}); {self.kept()}")
            finally:
                self.close_loggers()

    def resume_command(self) -> str:
        return f"cnnexp train trainer.resume={shlex.quote(str(self.run_dir.resolve()))}"

    def kept(self) -> str:
        try:
            self.checkpoints.wait()
        except UserError:  # the error being reported is another one, or this one already
            pass
        saved_step = self.checkpoints.written.get("last.pt")
        if saved_step is None:
            return "no checkpoint was written yet"
        return f"last.pt of step {saved_step} is kept: resume with {self.resume_command()}"

    def _open_loggers(self) -> None:
        """history.csv, curves.png and TensorBoard: rank 0's alone."""
        if not self.group.is_main:
            self.curves = self.history = self.tensorboard = Discard()
            return
        self.curves = CurvesPlot(self.run_dir / "curves.png", curves_title(self.cfg, self.run_dir))
        self.history = HistoryCSV(self.run_dir / "history.csv", self.state.history)
        self.tensorboard = TensorBoardLogger(self.run_dir)

    def close_loggers(self) -> None:
        try:  # the last checkpoint in place before the run ends, whatever ended it
            self.checkpoints.wait()
        except UserError:
            pass  # reported where it happened: finish() waits first
        self.curves.close()
        try:
            self.tensorboard.close()
        except OSError:  # a full disk: the error that stopped the run is the one to report
            pass

    def _stop_if_requested(self) -> None:
        """At a step boundary, after SIGINT/SIGTERM: save last.pt and stop (fit writes metrics.json).
        Data-parallel ranks stop only once they all know (`stop_agreed`, from a collective)."""
        if self.group.active:
            if not self.stop_agreed:
                return
            if self.stop_requests.signum is None:
                self.stop_requests.signum = signal.SIGTERM  # another rank was asked
        signum = self.stop_requests.signum
        if signum is None:
            return
        self.save("last")
        raise Interrupted(f"interrupted by {signal.Signals(signum).name} after step {self.state.step} "
                          f"({self.state.epoch} epochs + {self.state.batch_in_epoch} batches); saved "
                          f"{self.run_dir / 'checkpoints' / 'last.pt'}", signum,
                          f"resume with: {self.resume_command()}")

    def train_one_epoch(self) -> None:
        trainer_cfg = self.cfg.trainer
        epoch = self.state.epoch + 1
        if self.epoch_order is None:
            self.epoch_order = self.train_batches.order(self.generator)
        self.epoch_in_progress = epoch
        start_time, start_images = time.perf_counter(), 0
        with self.reporter.progress() as progress:
            task = progress.add_task("train", total=len(self.train_batches), completed=self.state.batch_in_epoch,
                                     epoch=epoch, loss=float("nan"), ips=0.0)
            for images, labels in self._training_batches():
                self.global_batch = self.train_batches.global_size(self.state.batch_in_epoch)
                loss = self.train_step(self.pipeline(images, train=True, generator=self.augment_generator), labels)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                start_images += self.global_batch
                self.state.images_seen += self.global_batch
                self.pending_losses.append(loss)
                if len(self.pending_losses) >= self.log_every:  # the only host-device sync of the step loop
                    self._flush_losses()
                    ips = start_images / max(time.perf_counter() - start_time, 1e-9)
                    progress.update(task, completed=self.state.batch_in_epoch, loss=self.state.smooth_loss, ips=ips)
                if trainer_cfg.eval_every and self.state.step % int(trainer_cfg.eval_every) == 0:
                    self._flush_losses()
                    ips = start_images / max(time.perf_counter() - start_time, 1e-9)
                    self.state.train_seconds += time.perf_counter() - start_time
                    self.validate(epoch, ips)
                    start_time, start_images = time.perf_counter(), 0
                if trainer_cfg.checkpoint_every and self.state.step % int(trainer_cfg.checkpoint_every) == 0:
                    self.save("last")
                if self.stopper.should_stop(self.state.step, epoch - 1):
                    self.stop_reason = "early stopping"
                    break
                if self.stop_agreed if self.group.active else self.stop_requests.requested:
                    self.state.train_seconds += time.perf_counter() - start_time
                    self._stop_if_requested()
        self._flush_losses()
        elapsed = time.perf_counter() - start_time
        self.state.train_seconds += elapsed
        stopped_mid_epoch = self.stop_reason is not None
        self.state.epoch, self.state.batch_in_epoch, self.epoch_order = epoch, 0, None
        if not trainer_cfg.eval_every and not stopped_mid_epoch:
            self.validate(epoch, start_images / max(elapsed, 1e-9))
        self._step_scheduler()
        if self.stop_reason is None and self.stopper.should_stop(self.state.step, epoch):
            self.stop_reason = "early stopping"
        self.save("last")

    def _training_batches(self):
        """The epoch's remaining batches. A file that can no longer be read (changed or damaged since the
        run started) stops the run with its one-line error (see fit), after saving last.pt at this step
        boundary."""
        batches = self.train_batches.iterate(self.epoch_order, self.state.batch_in_epoch)
        while True:
            try:
                images, labels = next(batches)
            except StopIteration:
                return
            except UserError:
                self.save("last")
                raise
            yield images, labels

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.model.train()
        # the model's forward runs under autocast (engine/precision.py); the loss sees float32 logits
        loss = self.group.loss(self.train_model(inputs), labels, self.global_batch, self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # so that grad_clip sees the true gradients
        if self.cfg.trainer.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.cfg.trainer.grad_clip))
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.ema:
            self.ema.update(self.model, self.state.step)
        return loss.detach()

    def _flush_losses(self) -> None:
        """Read the losses of the steps since the last read (one copy to the host, and in a data-parallel
        run one all-reduce, which also tells every rank whether any was asked to stop) and log them
        step by step; a diverged step stops the run here."""
        if not self.pending_losses:
            return
        losses, self.pending_losses = torch.stack(self.pending_losses), []
        values, stop = self.group.gather_losses(losses, self.stop_requests.requested)
        self.stop_agreed = self.stop_agreed or stop
        first_step = self.state.step - len(values) + 1
        for i, value in enumerate(values):
            self._track_loss(value, self.epoch_in_progress, first_step + i)

    def _track_loss(self, value: float, epoch: int, step: int) -> None:
        limit = float(self.cfg.trainer.diverge_loss)
        if not math.isfinite(value) or value > limit:
            above = "" if not math.isfinite(value) else f" (above trainer.diverge_loss={limit:g})"
            raise Diverged(f"Model diverged with loss = {value}{above} at epoch {epoch}, step {step}")
        previous = self.state.smooth_loss
        self.state.smooth_loss = value if previous is None else SMOOTHING * previous + (1 - SMOOTHING) * value
        self.state.interval_loss_sum += value
        self.state.interval_batches += 1
        self.tensorboard.scalars({"train/loss": value, "train/loss_smooth": self.state.smooth_loss}, step)

    def _step_scheduler(self) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            last = self.state.history[-1]["val_error"] if self.state.history else math.inf
            self.scheduler.step(last)
        else:
            self.scheduler.step()

    def evaluate(self, split: str) -> tuple[float, float]:
        """Loss and error of the model on a split; over all ranks of a data-parallel run (each its share)."""
        if not self.group.active:
            return evaluate(self.eval_model, self.data.split(split), self.pipeline, self.eval_batch_size)
        return evaluate_shard(self.eval_model, self.data.split(split), self.pipeline, self.eval_batch_size, self.group)

    def validate(self, epoch: int, images_per_second: float) -> None:
        self._flush_losses()
        self.group.average_buffers(self.model)
        if self.ema:
            self.group.average_buffers(self.ema.module)
        val_loss, val_error = self.evaluate("val")
        best_before = self.state.best_val_error
        improved = self.is_better(val_error, val_loss)
        test_error = None
        if improved:
            _, test_error = self.evaluate("test")
            self.state.best_val_error, self.state.best_val_loss, self.state.test_error = val_error, val_loss, test_error
            self.state.best_epoch, self.state.best_step = epoch, self.state.step
        self.stopper.update(improved, val_error, best_before, self.state.step, epoch)
        row = {
            "epoch": epoch, "step": self.state.step,
            "train_loss": self.state.interval_loss_sum / max(self.state.interval_batches, 1),
            "val_loss": val_loss, "val_error": val_error, "test_error": test_error,
            "lr": self.optimizer.param_groups[0]["lr"], "images_per_second": images_per_second,
        }
        self.state.interval_loss_sum, self.state.interval_batches = 0.0, 0
        self.state.history.append(row)
        self.history.append(row)
        self.curves.update(self.state.history)
        self.tensorboard.scalars({"val/loss": val_loss, "val/error": val_error, "test/error": test_error,
                                  "lr": row["lr"], "perf/images_per_second": images_per_second}, self.state.step)
        self.reporter.eval_row(row, improved)
        if improved:
            self.save("best")
        for hook in self.evaluation_hooks:
            hook(row)

    def is_better(self, val_error: float, val_loss: float) -> bool:
        """Whether this validation beats the best checkpoint's, by `trainer.best_by`: the error (ties keep
        the earlier model, as the tutorials), the loss, or the error with ties broken by the loss (on a
        small validation set many epochs tie at the same error; the lower loss is the surer model)."""
        best = self.state
        by = self.cfg.trainer.get("best_by") or "val_error"
        if by == "val_loss":
            return val_loss < best.best_val_loss
        if by == "val_error_then_loss":
            return (val_error, val_loss) < (best.best_val_error, best.best_val_loss)
        return val_error < best.best_val_error

    def _log_input_grid(self) -> None:
        images = self.data.split("train").images[: min(64, self.train_batches.batch_size * 4)]
        generator = torch.Generator(device=self.device).manual_seed(0)
        self.tensorboard.image_grid("inputs/train", self.pipeline.views(images, True, generator))

    # ---- the end -----------------------------------------------------------------------------
    def metrics(self, diverged: bool, interrupted: bool = False) -> dict:
        state = self.state
        return {
            "best_val_error": state.best_val_error if math.isfinite(state.best_val_error) else None,
            "best_epoch": state.best_epoch,
            "best_step": state.best_step,
            "test_error": state.test_error,
            "epochs_run": state.epoch,
            "steps": state.step,
            "train_seconds": state.train_seconds,
            "images_per_second": state.images_seen / max(state.train_seconds, 1e-9),
            "params": self.freezing.total,
            "precision": self.precision.name,
            "compiled": bool(self.cfg.device.get("compile")),
            "trainable_params": self.freezing.trainable,
            "stopped_early": self.stop_reason == "early stopping",
            "diverged": diverged,
            "interrupted": interrupted,
        }

    def finish(self, diverged: bool, interrupted: bool = False, pruned: bool = False) -> dict:
        self.checkpoints.wait()  # last.pt and best.pt on disk before metrics.json says the run is done
        metrics = self.metrics(diverged, interrupted)
        if pruned:
            metrics["pruned"] = True
        if not self.group.is_main:
            return metrics
        write_json_atomic(metrics, self.run_dir / "metrics.json")
        self.tensorboard.hparams(hparam_summary(self.cfg), {k: v for k, v in metrics.items()
                                                            if k in ("best_val_error", "test_error", "best_epoch")
                                                            and v is not None})
        if not (diverged or interrupted or pruned):
            self.reporter.finish(metrics, self.run_dir)
        return metrics


def curves_title(cfg, run_dir: Path) -> str:
    return f"{cfg.model.name} on {cfg.dataset.name}, {run_dir.name}"


def hparam_summary(cfg) -> dict:
    """The knobs worth comparing across runs, flattened to `group.key` names."""
    plain = to_plain(cfg)
    flat = {"seed": plain["seed"]}
    for group in ("dataset", "model", "optimizer", "scheduler", "augmentation", "trainer"):
        for key, value in (plain.get(group) or {}).items():
            if key not in ("root", "resume", "path") and value is not None:
                flat[f"{group}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
