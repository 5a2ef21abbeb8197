"""Reading .pt/.pth files safely: `torch.load(weights_only=True)` only, with one-line errors.

Anything but tensors and plain containers (a pickled model class, a callable that runs a command)
is refused before it can execute; checkpoints and weight files both come through here."""

import pickle
import warnings
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError


def safe_torch_load(path: Path, what: str, fix: str):
    """The file's content, or `error: <path> is not a safe|readable <what> (...); <fix>`."""
    try:
        with warnings.catch_warnings():  # a plain-pickle file also gets a protocol warning: one line is enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} is not a safe {what} ({refused(exc)}); {fix}")
    except Exception as exc:  # arbitrary bytes fail in many ways (KeyError on a bad magic number, EOFError, ...)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(f"{path} is not a readable {what} ({exc.__class__.__name__}{': ' if reason else ''}"
                        f"{reason}); it may be truncated or another kind of file")


def refused(exc: Exception) -> str:
    """What the weights-only unpickler refused. torch's message opens with advice to retry with
    weights_only=False, which is exactly what must not be done; keep only the line naming the object."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "nsupported" in line]
    return (named or ["it holds objects other than tensors and plain values"])[0][:160]
