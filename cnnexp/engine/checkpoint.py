"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with weights_only=True."""

import io
import os
import random
import threading
import time
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import find_checkpoint
from cnnexp.utils.safe_load import safe_torch_load

FORMAT = "cnnexp-checkpoint-1"
SLOW_WRITES = "CNNEXP_TEST_SLOW_WRITES"  # seconds one checkpoint write takes: lets fault tests kill inside it


def save_atomic(obj, path: Path) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename: a crash, a kill or a full
    disk never leaves half a file under `path`, only the previous complete one."""
    make_durable(*write_temporary(obj, path), path)


def write_temporary(obj, path: Path):
    """`obj` serialised to `.<name>.tmp` beside `path`; returns the still open file and its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    handle = open(tmp, "wb")
    try:
        if os.environ.get(SLOW_WRITES):
            write_slowly(obj, handle, float(os.environ[SLOW_WRITES]))
        else:
            torch.save(obj, handle)
        handle.flush()
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports a failed write as "unexpected pos ..."
        handle.close()
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from exc
    return handle, tmp


def make_durable(handle, tmp: Path, path: Path) -> None:
    """fsync the written temporary file, close it and rename it to `path`."""
    try:
        with handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # no space left (delayed allocation fails here), quota, read-only
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from exc


def cannot_write(path: Path, exc: Exception) -> UserError:
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    return UserError(f"cannot write {path.name} in {path.parent} ({reason}); free space there "
                     f"or choose another folder (the previous {path.name} is intact)")


class CheckpointWriter:
    """save_atomic for the trainer, with its last part (the fsync, then the rename) on a thread: training
    goes on while the disk makes the file durable. That wait was about 50 ms for the 35 MB Olivetti
    LeNet, 27 times in its 20-epoch run (6 % of its wall time, issue 28). The file appears under its
    name once it is on disk, as before. One file at a time: `save` and `wait` first finish the
    previous one and raise its error; `written` holds the step of each file in place."""

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.error: UserError | None = None
        self.written: dict[str, int] = {}  # file name -> training step it holds

    def save(self, obj, path: Path, step: int) -> None:
        self.wait()
        handle, tmp = write_temporary(obj, path)  # the tensors are read here, before training changes them
        self.thread = threading.Thread(target=self._finish, args=(handle, tmp, path, step), name="checkpoint fsync")
        self.thread.start()

    def _finish(self, handle, tmp: Path, path: Path, step: int) -> None:
        try:
            make_durable(handle, tmp, path)
        except UserError as exc:
            self.error = exc
            return
        self.written[path.name] = step

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        error, self.error = self.error, None
        if error is not None:
            raise error


def write_slowly(obj, handle, seconds: float, pieces: int = 10) -> None:
    """The serialised checkpoint written in pieces over `seconds` (the fault-injection hook)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    for start in range(0, len(data), size):
        handle.write(data[start:start + size])
        handle.flush()
        time.sleep(seconds / pieces)


def load_checkpoint(run_or_file, which: str = "last") -> dict:
    """Load safely: anything `torch.load(weights_only=True)` refuses (code, foreign objects) is an error."""
    path = find_checkpoint(run_or_file, which)
    ckpt = safe_torch_load(path, "cnnexp checkpoint", "load only checkpoints cnnexp wrote")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a cnnexp checkpoint (no '{FORMAT}' marker); use a file written by cnnexp train")
    return ckpt


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
