"""Where a run reports: history.csv, curves.png, TensorBoard, and the rich console."""

import csv
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter

from cnnexp.engine.curves import draw_curves
from cnnexp.utils.files import display_path
from cnnexp.utils.text import WIDTH, fold, percent, plural


REDRAW_SECONDS = 5.0  # curves.png is redrawn at most this often while a run goes (and always at its end)
NICENESS = 10  # the drawing process runs this much below the run's priority

HISTORY_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_error", "test_error", "lr", "images_per_second"]


class HistoryCSV:
    """history.csv: one row per evaluation, flushed as it is written."""

    def __init__(self, path: Path, previous_rows: list[dict] = ()):
        self.path = path
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, HISTORY_COLUMNS)
            writer.writeheader()
            writer.writerows(previous_rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, HISTORY_COLUMNS).writerow({k: row.get(k) for k in HISTORY_COLUMNS})


class CurvesPlot:
    """curves.png: the run's loss and error curves, kept current (and written atomically) from the trainer's
    history while the run goes, so a person can open it at any time; drawn for the last time at the end.

    Drawing costs matplotlib about 0.15 s of CPU, more than a small model's epoch, so it never happens on
    the training path: a separate process (`python -m cnnexp.engine.curves`, its priority lowered by
    NICENESS so it takes no core from training) draws, at most every `interval` seconds; each evaluation
    sends it the new rows through a pipe. The process is started only once a picture is due, `interval`
    seconds into the run (a timer sends the rows then, even if no evaluation comes), so a run shorter
    than that never starts it: its one picture is drawn here when it ends. If the process cannot be
    started or dies, the pictures are drawn here, no more often. Redrawing after every evaluation cost
    the 20-epoch Olivetti tutorial run 7-19 % of its wall time on two cores (issue 28)."""

    def __init__(self, path: Path, title: str, interval: float | None = None):
        self.path, self.title = path, title
        self.interval = REDRAW_SECONDS if interval is None else interval
        self.history: list[dict] = []
        self.rows_sent = self.sent = self.drawn = 0
        self.last_picture = time.monotonic()  # the run's start: the first picture is due `interval` s later
        self.lock = threading.Lock()  # update() and the timer both send
        self.timer: threading.Timer | None = None
        self.answered = threading.Condition()
        self.worker = None
        self.started = self.answers_ended = False

    def update(self, history: list[dict]) -> None:
        with self.lock:
            self.history = [dict(row) for row in history]
            if self.worker is not None:  # it draws at its own pace
                self._send()
                return
            wait = self.last_picture + self.interval - time.monotonic()
            if wait <= 0:
                self._picture_due()
            elif self.timer is None:
                self.timer = threading.Timer(wait, self._on_timer)
                self.timer.daemon = True
                self.timer.start()

    def _on_timer(self) -> None:
        with self.lock:
            self.timer = None
            if self.worker is None and self.history:
                self._picture_due()

    def _picture_due(self) -> None:
        """Hand the rows to the drawing process (starting it the first time), else draw them here."""
        self.last_picture = time.monotonic()
        if not self.started:
            self._start()
        if not self._send():
            self._draw_here()

    def _start(self) -> None:
        self.started = True
        try:
            # its stderr is not the run's: a picture it cannot write (a full disk) must not add lines to the
            # one-line error the run then ends with; history.csv holds the same numbers
            self.worker = subprocess.Popen([sys.executable, "-m", "cnnexp.engine.curves", str(self.path), self.title,
                                            str(self.interval)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        lower_priority(self.worker.pid)
        threading.Thread(target=self._read_answers, args=(self.worker,), name="curves.png answers", daemon=True).start()

    def _send(self) -> bool:
        """Send the rows the drawing process has not had yet; False when there is no such process."""
        if self.worker is None:
            return False
        try:
            rows = self.history[self.rows_sent:]
            self.worker.stdin.write(json.dumps({"seq": self.sent + 1, "rows": rows}) + "\n")
            self.worker.stdin.flush()
        except (OSError, ValueError):  # the drawing process is gone
            self.worker = None
            return False
        self.rows_sent, self.sent = len(self.history), self.sent + 1
        return True

    def wait(self) -> None:
        """Return once everything sent is drawn (at most `interval` seconds after it was sent)."""
        with self.answered:
            self.answered.wait_for(lambda: self.drawn >= self.sent or self.worker is None or self.answers_ended
                                   or self.worker.poll() is not None)

    def close(self) -> None:
        """Draw the last picture: by the drawing process at once (the end is not held back by the interval),
        or here if it never started (a run shorter than the interval) or is gone; then end the process."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
            if self.worker is not None and self.worker.poll() is None and self._send():
                self._end_worker()
            elif self.history:
                self._draw_here()

    def _draw_here(self) -> None:
        try:
            draw_curves({"": self.history}, self.path, self.title)
        except OSError:  # a full disk must not stop training or add to its error line; history.csv has the rows
            pass

    def _end_worker(self) -> None:
        try:  # an explicit end: EOF may never come while forked DataLoader workers hold the pipe
            self.worker.stdin.write(json.dumps({"end": True}) + "\n")
            self.worker.stdin.close()
        except (OSError, ValueError):
            pass  # it is gone already
        try:
            self.worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.worker.kill()

    def _read_answers(self, worker: subprocess.Popen) -> None:
        for line in worker.stdout:
            with self.answered:
                self.drawn = int(line)
                self.answered.notify_all()
        with self.answered:  # EOF: the process ended (or was killed with its process group): no more answers
            self.answers_ended = True
            self.answered.notify_all()


def lower_priority(pid: int) -> None:
    """Raise a child's niceness by NICENESS above this process's (a user may always lower a priority)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    except (AttributeError, OSError):  # no setpriority (Windows), or the process is already gone
        pass


class TensorBoardLogger:
    """Scalars under train/, val/, test/ and perf/; an input grid; hparams with the final metrics."""

    def __init__(self, run_dir: Path):
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def scalars(self, values: dict, step: int) -> None:
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, step)

    def image_grid(self, tag: str, images: torch.Tensor, step: int = 0) -> None:
        """images: float 0..255, N x C x H x W; up to 64 of them, tiled by TensorBoard (8 x 8 for 64). Not
        torchvision's make_grid: importing torchvision costs a short run more than the rest of its start."""
        self.writer.add_images(tag, (images[:64].detach().cpu() / 255.0).clamp(0, 1), step)

    def picture(self, tag: str, rgb, step: int = 0) -> None:
        """A rendered picture: uint8 H x W x 3 (numpy)."""
        self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def hparams(self, hparams: dict, metrics: dict) -> None:
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        numbers = {f"hparam/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.writer.add_hparams(clean, numbers, run_name=".")

    def close(self) -> None:
        self.writer.close()


def loss_text(loss: float | None) -> str:
    """The progress bar's training loss: the smoothed loss read so far, '-' before the first is read."""
    return "-" if loss is None else f"{loss:.4f}"


class ConsoleReporter:
    """The run as a user watches it: key config, a progress bar per epoch, a row per evaluation. With
    `log`, every line printed (not the transient progress bar) also goes to that file as plain text:
    the run folder's train.log."""

    ROW = "{epoch:>6} {step:>8} {train_loss:>10} {val_loss:>9} {val_error:>9} {test_error:>10} {lr:>9} {ips:>9}"

    def __init__(self, console: Console | None = None, log: Path | None = None):
        self.console = console or Console()
        self.header_printed = False
        self.notebook_line: NotebookProgress | None = None
        self.log = log
        self.log_console = Console(file=io.StringIO(), width=WIDTH, no_color=True, force_terminal=False,
                                   highlight=False)

    def print(self, *objects, **options) -> None:
        """Print on the console and, plain, in the log."""
        self.console.print(*objects, **options)
        self.log_only(*objects, **options)

    def log_only(self, *objects, **options) -> None:
        """Append to the log what the console shows elsewhere (a diverged or interrupted run's last line)."""
        if self.log is None:
            return
        self.log_console.print(*objects, **options)
        buffer = self.log_console.file
        with open(self.log, "a", encoding="utf-8") as log_file:
            log_file.write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()

    def start(self, summary: dict) -> None:
        table = Table(title="cnnexp train", show_header=False, box=None)
        for key, value in summary.items():
            table.add_row(f"[bold]{key}[/]", str(value))
        self.print(table)

    def progress(self):
        """The epoch's progress bar: rich's in a terminal, a line updated in place in a Jupyter notebook
        (rich's own live display there needs ipywidgets), none when output goes to a file or pipe."""
        if self.console.is_jupyter:
            if self.notebook_line is None:
                self.notebook_line = NotebookProgress()
            return self.notebook_line
        return Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]:.0f} img/s"),
            TimeElapsedColumn(), console=self.console, transient=True, disable=not self.console.is_terminal,
        )

    def eval_row(self, row: dict, improved: bool) -> None:
        if not self.header_printed:
            self.print(self.ROW.format(epoch="epoch", step="step", train_loss="train loss",
                                               val_loss="val loss", val_error="val err", test_error="test err",
                                               lr="lr", ips="img/s"), style="bold")
            self.header_printed = True
        text = self.ROW.format(
            epoch=row["epoch"], step=row["step"], train_loss=f"{row['train_loss']:.4f}",
            val_loss=f"{row['val_loss']:.4f}", val_error=percent(row["val_error"]),
            test_error=percent(row["test_error"]), lr=f"{row['lr']:.3g}", ips=f"{row['images_per_second']:.0f}",
        )
        self.print(text + ("  *" if improved else ""), highlight=False)

    def finish(self, metrics: dict, run_dir: Path) -> None:
        if metrics.get("best_epoch") is not None:
            self.print(
                f"Best validation error {percent(metrics['best_val_error'])} at epoch {metrics['best_epoch']} "
                f"(step {metrics['best_step']}), test error {percent(metrics['test_error'])}",
                style="bold green", highlight=False, soft_wrap=True,
            )
        self.print(fold(
            f"{plural(metrics['epochs_run'], 'epoch')} in {metrics['train_seconds']:.1f} s "
            f"({metrics['images_per_second']:.0f} img/s); run folder: {display_path(run_dir)}"), highlight=False, soft_wrap=True,
        )


class NotebookProgress:
    """The epoch's progress in a notebook: one output line (an HTML progress bar, plain text beside it)
    shown once per run and updated in place through IPython's display handles, which every Jupyter
    front end supports without widgets. The part of rich's Progress the trainer uses: a context per
    epoch, add_task, update."""

    REFRESH_SECONDS = 0.25  # the line is redrawn at most this often (and at the end of each epoch)

    def __init__(self):
        self.handle = None  # IPython's DisplayHandle of the line, made at the first draw
        self.fields: dict = {}
        self.started = self.shown = 0.0

    def __enter__(self) -> "NotebookProgress":
        self.started, self.shown = time.perf_counter(), 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.draw()

    def add_task(self, description: str, total: int, completed: int = 0, **fields) -> int:
        self.fields = {"total": total, "completed": completed, **fields}
        self.draw()
        return 0

    def update(self, task: int, **fields) -> None:
        self.fields.update(fields)
        if time.perf_counter() - self.shown >= self.REFRESH_SECONDS:
            self.draw()

    def draw(self) -> None:
        from IPython.display import display

        self.shown = time.perf_counter()
        line = self.bundle(self.fields, self.shown - self.started)
        if self.handle is None:
            self.handle = display(line, raw=True, display_id=True)
        else:
            self.handle.update(line, raw=True)

    @staticmethod
    def bundle(fields: dict, seconds: float) -> dict:
        """The line as text and as HTML (a <progress> element), for whichever the front end shows."""
        done, total = fields["completed"], fields["total"]
        speed = f"{fields['ips']:.0f} img/s  " if fields["ips"] else ""  # 0 until the loss is first read
        text = f"epoch {fields['epoch']}  {done}/{total} batches  loss {fields['loss']}  {speed}{seconds:.0f} s"
        return {"text/plain": text,
                "text/html": f'<progress value="{done}" max="{max(total, 1)}"></progress> <code>{text}</code>'}
