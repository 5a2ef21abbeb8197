"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with weights_only=True."""

import os
import random
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError
from cnnexp.utils.safe_load import safe_torch_load

FORMAT = "cnnexp-checkpoint-1"


def save_atomic(obj, path: Path) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
