"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with weights_only=True."""

import io
import os
import pickle
import random
import time
import warnings
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError

FORMAT = "cnnexp-checkpoint-1"
SLOW_WRITES = "CNNEXP_TEST_SLOW_WRITES"  # seconds one checkpoint write takes: lets fault tests kill inside it


def save_atomic(obj, path: Path) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename: a crash, a kill or a full
    disk never leaves half a file under `path`, only the previous complete one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if os.environ.get(SLOW_WRITES):
                write_slowly(obj, handle, float(os.environ[SLOW_WRITES]))
            else:
                torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # no space left, quota, read-only: the previous file stays
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path.name} in {path.parent} ({exc.strerror or exc}); free space there "
                        f"or choose another folder (the previous {path.name} is intact)") from exc


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


def find_checkpoint(run_or_file, which: str = "last") -> Path:
    """A checkpoint file, or `<run>/checkpoints/<which>.pt` for a run folder."""
    path = Path(str(run_or_file)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / f"{which}.pt"
        if not path.exists():
            raise UserError(f"no {which} checkpoint in the run folder ({path} is missing); pick a finished train run")
    elif not path.exists():
        raise UserError(f"{run_or_file} does not exist; give a run folder (outputs/train/<run>) or a .pt file")
    return path


def load_checkpoint(run_or_file, which: str = "last") -> dict:
    """Load safely: anything `torch.load(weights_only=True)` refuses (code, foreign objects) is an error."""
    path = find_checkpoint(run_or_file, which)
    try:
        with warnings.catch_warnings():  # a plain-pickle file also gets a protocol warning: one line is enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} is not a safe cnnexp checkpoint ({refused(exc)}); load only checkpoints cnnexp wrote")
    except Exception as exc:  # arbitrary bytes fail in many ways (KeyError on a bad magic number, EOFError, ...)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(f"{path} is not a readable checkpoint ({exc.__class__.__name__}{': ' if reason else ''}"
                        f"{reason}); it may be truncated or another kind of file")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a cnnexp checkpoint (no '{FORMAT}' marker); use a file written by cnnexp train")
    return ckpt


def refused(exc: Exception) -> str:
    """What the weights-only unpickler refused. torch's message opens with advice to retry with
    weights_only=False, which is exactly what must not be done; keep only the line naming the object."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "nsupported" in line]
    return (named or ["it holds objects other than tensors and plain values"])[0][:160]


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
