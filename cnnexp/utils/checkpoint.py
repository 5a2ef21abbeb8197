"""Checkpoints, written and read here alone: a `Checkpoint` is a plain dict of tensors and primitives on
disk (loadable with `torch.load(weights_only=True)`), written atomically, marked with its format version.

Every other module reads a checkpoint's fields, never its keys. Fields added to a format over time
have defaults, so a checkpoint written before them still loads; a file of a newer format is refused
with a one-line error (a new format number goes with code here that reads the older ones).
"""

import errno
import os
import shutil
import random
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError
from cnnexp.utils.files import temporary_name
from cnnexp.utils.runs import find_checkpoint
from cnnexp.utils.safe_load import safe_torch_load

VERSION = 1
FORMAT = f"cnnexp-checkpoint-{VERSION}"
MARKER = re.compile(r"cnnexp-checkpoint-(\d+)$")
FULL_DISK_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full


@dataclass
class Checkpoint:
    """What a run saves: enough to rebuild its model for inference and to resume training exactly."""

    model: dict  # the weights eval/predict use (the weight average when trainer.ema_decay is set)
    config: dict  # the resolved training config
    class_names: list
    normalization: dict  # Normalizer.state_dict(): mode, mean, std (0..255 units)
    input_shape: list  # C, H, W the model takes
    image_shape: list  # C, H, W of the training images (before any crop)
    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    trained_model: dict | None = None  # the weights being trained, when they differ from `model` (EMA)
    optimizer: dict | None = None
    scheduler: dict | None = None
    epoch_order: torch.Tensor | None = None  # the current epoch's batch order, to resume mid-epoch
    train_state: dict | None = None  # engine.trainer.TrainState as a dict
    early_stopping: dict | None = None
    rng: dict | None = None
    world_size: int = 1
    precision: str = "fp32"
    grad_scaler: dict | None = None

    @property
    def training_weights(self) -> dict:
        return self.trained_model if self.trained_model is not None else self.model

    @property
    def best_step(self) -> int | None:
        """The step of the best checkpoint of the state this one saved."""
        return (self.train_state or {}).get("best_step")

    def to_dict(self) -> dict:
        content = {"format": FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}
        if self.trained_model is None:
            del content["trained_model"]
        return content

    def write(self, path: Path, also: tuple[Path, ...] = ()) -> None:
        save_atomic(self.to_dict(), path, also)

    @classmethod
    def from_dict(cls, content, path: Path) -> "Checkpoint":
        """A loaded file's content as a Checkpoint: its format checked, an older version upgraded."""
        version = format_version(content)
        if version is None:
            raise UserError(f"{path} is not a cnnexp checkpoint (no '{FORMAT}' marker); use a file written by "
                            "cnnexp train")
        if version > VERSION:
            raise UserError(f"{path} was written by a newer cnnexp (checkpoint format {version}, this one reads up to "
                            f"{VERSION}); upgrade cnnexp to read it")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in content]
        if missing:
            raise UserError(f"{path} lacks {', '.join(missing)}; it was not written by cnnexp train")
        return cls(**{f.name: content[f.name] for f in fields(cls) if f.name in content})

    @classmethod
    def read(cls, run_or_file, which: str = "last") -> "Checkpoint":
        """A run folder's `<which>` checkpoint or a checkpoint file, loaded safely: anything
        `torch.load(weights_only=True)` refuses (code, foreign objects) is an error."""
        path = find_checkpoint(run_or_file, which)
        return cls.from_dict(safe_torch_load(path, "cnnexp checkpoint", "load only checkpoints cnnexp wrote"), path)


def format_version(content) -> int | None:
    """The format version of a loaded file, None when it is not a cnnexp checkpoint."""
    match = MARKER.match(str(content.get("format", ""))) if isinstance(content, dict) else None
    return int(match.group(1)) if match else None


def save_atomic(obj, path: Path, also: tuple[Path, ...] = ()) -> None:
    """Write to a temporary file beside `path`, then rename: a crash, a kill or a full disk never leaves
    half a file under `path`, only the previous complete one (a killed process's written pages are the
    kernel's, and reach the disk all the same; a full disk fails the write, before the rename).

    `also`: other names that become the same file (best.pt with the epoch's last.pt: hard links, or copies
    where the filesystem has none; timm's checkpoint saver links them too). They are put in place before
    `path`, so a crash between the two leaves what writing them one after the other always did (a new
    best.pt, the previous last.pt). Checkpoints are only ever replaced by a rename, never written in place,
    so a link keeps the content it had when `path` is replaced later.

    No fsync: waiting for the disk took 45-55 ms a save (a 35 MB last.pt every epoch, best.pt at each
    new best: 6 % of the 20-epoch Olivetti run's wall time, issue 28) and guards only against a power cut
    in the seconds after a save; timm's and Lightning's checkpoint savers do not wait either (and ext4
    and btrfs write out a file that replaces another by a rename before the rename itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as handle:
            serialize(obj, handle)
        for other in also:
            link_or_copy(tmp, temporary_name(other))
            os.replace(temporary_name(other), other)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # no space left, quota, read-only: the previous file stays
        reason = write_failure(exc, path.parent)
        names = " and ".join(name.name for name in (path, *also))
        for name in (path, *also):
            temporary_name(name).unlink(missing_ok=True)
        raise UserError(f"cannot write {names} in {path.parent} ({reason}); free space there "
                        f"or choose another folder (the previous {names} {'are' if also else 'is'} intact)") from exc


def link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        shutil.copyfile(source, target)  # a filesystem without hard links (FAT, some network shares)


def write_failure(exc: Exception, folder: Path) -> str:
    """Why a checkpoint could not be written. torch's zip writer reports a failed write as a RuntimeError
    ("unexpected pos ..."), and whether closing the file then raises the disk's own error depends on what
    was still buffered: a full disk is named as one whichever way it surfaced."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if shutil.disk_usage(folder).free < FULL_DISK_BYTES:
        return os.strerror(errno.ENOSPC)
    return str(exc).splitlines()[0]


def serialize(obj, handle) -> None:
    """The checkpoint's bytes into an open file (the fault tests replace this to write slowly)."""
    torch.save(obj, handle)


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
