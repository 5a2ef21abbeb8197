"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with weights_only=True."""

import io
import os
import random
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
    except (OSError, RuntimeError) as exc:  # no space left, quota, read-only: the previous file stays
        # (torch's zip writer reports a failed write as a RuntimeError "unexpected pos ...")
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise UserError(f"cannot write {path.name} in {path.parent} ({reason}); free space there "
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
