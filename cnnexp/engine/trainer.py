"""The training loop: one function per epoch, validation every `eval_every` steps, checkpoints,
early stopping, divergence detection and a clean stop on SIGINT/SIGTERM.

The trainer is handed a run's parts (`engine.assemble.assemble_training`) and a run folder; it builds
nothing and knows nothing of the CLI.
"""

import math
import shlex
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from cnnexp.data.stream import first_images
from cnnexp.data.transforms import Normalizer
from cnnexp.engine.assemble import TrainingParts
from cnnexp.engine.build import step_scheduler, to_plain
from cnnexp.engine.evaluation import evaluate, evaluate_shard
from cnnexp.engine.interrupts import StopRequests
from cnnexp.engine.outcomes import failures_explained
from cnnexp.engine.loggers import ConsoleReporter, loss_text
from cnnexp.engine.records import Loggers, TrainState, hparam_summary, is_better, run_metrics
from cnnexp.utils.checkpoint import Checkpoint, restore_rng, rng_state
from cnnexp.utils.errors import Diverged, Interrupted, UserError
from cnnexp.utils.files import write_json_atomic
from cnnexp.utils.text import plural

SMOOTHING = 0.9  # weight of the past in the moving-average training loss


class Trainer:
    def __init__(self, parts: TrainingParts, run_dir: Path, reporter: ConsoleReporter | None = None):
        self.parts, self.cfg, self.run_dir = parts, parts.config, Path(run_dir)
        self.reporter = reporter or ConsoleReporter()
        self.group, self.device, self.data, self.pipeline = parts.group, parts.device, parts.data, parts.pipeline
        self.model, self.train_model, self.ema, self.scaler = parts.model, parts.train_model, parts.ema, parts.scaler
        self.optimizer, self.scheduler, self.stopper = parts.optimizer, parts.scheduler, parts.stopper
        self.train_batches, self.generator = parts.train_batches, parts.generator
        self.label_smoothing = self.cfg.trainer.label_smoothing  # read once, not every step
        self.eval_batch_size = parts.eval_batch_size
        self.log_every = self.cfg.trainer.log_every
        self.pending_losses: list[torch.Tensor] = []  # on the device, read every log_every steps
        self.shown_speed = 0.0  # the bar's img/s: measured when losses are read, else the last epoch's
        self.global_batch = 0  # images in the current step over all processes
        self.epoch_in_progress = 0
        self.stop_agreed = False  # data-parallel: a rank was asked to stop, and all ranks know it
        self.evaluation_hooks: list = []  # f(history row) after each evaluation; may raise Pruned (a search)
        self.state = TrainState()
        self.epoch_order: torch.Tensor | None = None
        self.stop_reason: str | None = None
        self.stop_requests = StopRequests()
        self.saved_step: int | None = None  # the step of the last.pt this run wrote
        self.best_due = False  # an evaluation found a new best that best.pt does not hold yet
        self.from_python = False  # started by cnnexp.train(): say how to resume in Python
        self.eval_skipped: dict[str, list[str]] = {}  # split -> reasons for the files its evaluations skipped

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights validation measures and checkpoints offer to eval/predict: the average with EMA."""
        return self.ema.module if self.ema else self.model

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        order, scaler, scheduler = self.epoch_order, self.scaler, self.scheduler
        return Checkpoint(
            model=self.eval_model.state_dict(), trained_model=self.model.state_dict() if self.ema else None,
            optimizer=self.optimizer.state_dict(), scheduler=scheduler.state_dict() if scheduler else None,
            epoch=self.state.epoch, step=self.state.step, epoch_order=order.cpu() if order is not None else None,
            train_state=asdict(self.state), early_stopping=self.stopper.state_dict(), rng=rng_state(self.generator),
            config=to_plain(self.cfg), class_names=list(self.data.class_names),
            normalization=self.pipeline.normalizer.state_dict(), input_shape=list(self.parts.input_shape),
            image_shape=list(self.data.image_shape), world_size=self.group.world_size,
            precision=self.parts.precision.name, grad_scaler=scaler.state_dict() if scaler else None)

    def save(self, which: str) -> None:
        """Write last.pt or best.pt. A new best found by the epoch's evaluation is saved with the epoch's
        last.pt that follows it, as the same file (`best_due`): one write, not two (a 35 MB Olivetti LeNet
        checkpoint takes ~50 ms of CPU to write, 7 new bests in the 20-epoch tutorial run)."""
        self._flush_losses()
        link_best = which == "last" and self.best_due
        self.best_due = False  # written now: as best.pt itself, or as last.pt with best.pt linked to it
        if not self.group.is_main:
            return
        folder = self.run_dir / "checkpoints"
        self.checkpoint().write(folder / f"{which}.pt", also=(folder / "best.pt",) if link_best else ())
        if which == "last":
            self.saved_step = self.state.step

    def load(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint of the same configuration (resume)."""
        self.model.load_state_dict(ckpt.training_weights)
        if self.ema:
            self.ema.module.load_state_dict(ckpt.model)
        self.pipeline.normalizer = Normalizer(**ckpt.normalization)
        self.optimizer.load_state_dict(ckpt.optimizer)
        if self.scheduler and ckpt.scheduler:
            self.scheduler.load_state_dict(ckpt.scheduler)
        self.state = TrainState(**ckpt.train_state)
        self.stopper.load_state_dict(ckpt.early_stopping)
        order = ckpt.epoch_order
        self.epoch_order = order.to(self.device) if order is not None and self.state.batch_in_epoch else None
        restore_rng(ckpt.rng, self.generator)
        if self.scaler and ckpt.grad_scaler:
            self.scaler.load_state_dict(ckpt.grad_scaler)

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict:
        with self.stop_requests:  # before anything is written: a Ctrl-C from now on stops at a step
            self.loggers = Loggers.open(self.cfg, self.run_dir, self.state.history, self.group.is_main)
            if self.parts.weights is not None and self.group.is_main:
                write_json_atomic(self.parts.weights.record(), self.run_dir / "weights.json")
            try:
                with failures_explained(self):
                    images = first_images(self.data.split("train").images, min(64, self.train_batches.batch_size * 4))
                    self.loggers.input_grid(self.pipeline, images, self.device)
                    while self.state.epoch < self.cfg.trainer.epochs and self.stop_reason is None:
                        if self.group.active:
                            self.stop_agreed = self.group.any(self.stop_requests.requested or self.stop_agreed)
                        self._stop_if_requested()
                        self.train_one_epoch()
                    return self.finish(diverged=False)
            except (Diverged, Interrupted) as exc:
                self.reporter.log_only(str(exc), highlight=False, soft_wrap=True)
                raise
            finally:
                self.loggers.close()

    def resume_command(self) -> str:
        """How to continue this run: the command line's, or the Python call's when started from Python."""
        folder = str(self.run_dir.resolve())
        if self.from_python:
            return f"cnnexp.train({'trainer.resume=' + folder!r})"
        return f"cnnexp train trainer.resume={shlex.quote(folder)}"

    def kept(self) -> str:
        if self.saved_step is None:
            return "no checkpoint was written yet"
        return f"last.pt of step {self.saved_step} is kept: resume with {self.resume_command()}"

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
                          f"({plural(self.state.epoch, 'epoch')} + {plural(self.state.batch_in_epoch, 'batch')}); saved "
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
                                     epoch=epoch, loss=loss_text(self.state.smooth_loss), ips=self.shown_speed)
            for images, labels in self._training_batches():
                self.global_batch = self.train_batches.global_size(self.state.batch_in_epoch)
                loss = self.train_step(self.pipeline(images, train=True, generator=self.parts.augment_generator), labels)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                start_images += self.global_batch
                self.state.images_seen += self.global_batch
                self.pending_losses.append(loss)
                # the only host-device sync of the step loop: every log_every steps, and at the run's first step
                # so that the bar has a loss to show; between reads it shows the last smoothed loss
                if len(self.pending_losses) >= self.log_every or self.state.smooth_loss is None:
                    self._flush_losses()
                    self.shown_speed = start_images / max(time.perf_counter() - start_time, 1e-9)
                    progress.update(task, loss=loss_text(self.state.smooth_loss), ips=self.shown_speed)
                progress.update(task, completed=self.state.batch_in_epoch)
                if trainer_cfg.eval_every and self.state.step % trainer_cfg.eval_every == 0:
                    self._flush_losses()
                    ips = start_images / max(time.perf_counter() - start_time, 1e-9)
                    self.state.train_seconds += time.perf_counter() - start_time
                    self.validate(epoch, ips)
                    if self.best_due:  # the weights move on with the next step: saved now, not with last.pt
                        self.save("best")
                    start_time, start_images = time.perf_counter(), 0
                if trainer_cfg.checkpoint_every and self.state.step % trainer_cfg.checkpoint_every == 0:
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
        self.shown_speed = start_images / max(elapsed, 1e-9) if start_images else self.shown_speed
        stopped_mid_epoch = self.stop_reason is not None
        self.state.epoch, self.state.batch_in_epoch, self.epoch_order = epoch, 0, None
        if not trainer_cfg.eval_every and not stopped_mid_epoch:
            self.validate(epoch, start_images / max(elapsed, 1e-9))
        step_scheduler(self.scheduler, self.state.history)
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
        with self.parts.precision.autocast():  # the forward at device.precision; the loss sees float32 logits
            logits = self.train_model(inputs).float()
        loss = self.group.loss(logits, labels, self.global_batch, self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # so that grad_clip sees the true gradients
        if self.cfg.trainer.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.trainer.grad_clip)
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
        limit = self.cfg.trainer.diverge_loss
        if not math.isfinite(value) or value > limit:
            above = "" if not math.isfinite(value) else f" (above trainer.diverge_loss={limit:g})"
            raise Diverged(f"Model diverged with loss = {value}{above} at epoch {epoch}, step {step}")
        previous = self.state.smooth_loss
        self.state.smooth_loss = value if previous is None else SMOOTHING * previous + (1 - SMOOTHING) * value
        self.state.interval_loss_sum += value
        self.state.interval_batches += 1
        self.loggers.tensorboard.scalars({"train/loss": value, "train/loss_smooth": self.state.smooth_loss}, step)

    def evaluate(self, split: str) -> tuple[float, float]:
        """Loss and error of the model on a split; over all ranks of a data-parallel run (each its share)."""
        skipped = self.eval_skipped.setdefault(split, [])
        with self.parts.precision.autocast():
            if not self.group.active:
                return evaluate(self.eval_model, self.data.split(split), self.pipeline, self.eval_batch_size, skipped)
            return evaluate_shard(self.eval_model, self.data.split(split), self.pipeline, self.eval_batch_size,
                                  self.group, skipped)

    def validate(self, epoch: int, images_per_second: float) -> None:
        self._flush_losses()
        self.group.average_buffers(self.model)
        if self.ema:
            self.group.average_buffers(self.ema.module)
        val_loss, val_error = self.evaluate("val")
        best_before = self.state.best_val_error
        improved = is_better(self.state, self.cfg.trainer.best_by, val_error, val_loss)
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
        self.loggers.evaluation(row, self.state.history)
        self.reporter.eval_row(row, improved)
        if improved:
            self.best_due = True
        for hook in self.evaluation_hooks:
            hook(row)

    # ---- the end -----------------------------------------------------------------------------
    def skipped_files(self) -> dict[str, list[str]]:
        """split -> the reasons for the unreadable files its stream skipped (dataset.check=false), each
        file once however many epochs or evaluations met it; splits without any left out."""
        found = {"train": getattr(self.train_batches, "skipped", []), **self.eval_skipped}
        return {split: list(dict.fromkeys(reasons)) for split, reasons in found.items() if reasons}

    def finish(self, diverged: bool, interrupted: bool = False, pruned: bool = False) -> dict:
        if self.best_due:  # a search pruned the run at the evaluation that found it
            self.save("best")
        metrics = run_metrics(self.state, self.parts, self.stop_reason, diverged, interrupted)
        if pruned:
            metrics["pruned"] = True
        skipped = self.skipped_files()
        if skipped:
            metrics["skipped_files"] = sum(map(len, skipped.values()))
            metrics["skipped_by_split"] = {split: len(reasons) for split, reasons in skipped.items()}
        if not self.group.is_main:
            return metrics
        if skipped:
            counts = ", ".join(f"{len(reasons)} {split}" for split, reasons in skipped.items())
            first = next(iter(skipped.values()))[0]
            sys.stderr.write(f"warning: skipped {plural(metrics['skipped_files'], 'unreadable file')} during the run "
                             f"({counts}; first: {first}); dataset.check=true finds them before training starts\n")
        write_json_atomic(metrics, self.run_dir / "metrics.json")
        self.loggers.final(hparam_summary(self.cfg), metrics)
        if not (diverged or interrupted or pruned):
            self.reporter.finish(metrics, self.run_dir)
        return metrics
