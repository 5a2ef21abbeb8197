"""Output folders for commands that read a run instead of starting one (eval, predict, ...).

`eval` writes into `<run>/eval/<split>[-tencrop|-fivecrop[-vote]][-<checkpoint>]` (computed from its
keys, by a resolver where a multirun's Hydra job folders need it); the Hydra jobs that only print
(serve, sweep summarize) get an empty scratch folder as their job folder, removed again. When the run
named does not exist, the eval folder is a scratch folder too: the job then fails with a one-line
error and nothing is left behind, neither under outputs/ nor beside a mistyped path.
"""

import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from cnnexp.utils.choices import SPLITS

SCRATCH_PREFIX = "cnnexp-"


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix=SCRATCH_PREFIX)


def is_scratch(path: Path) -> bool:
    path = Path(path).resolve()
    return path.name.startswith(SCRATCH_PREFIX) and path.parent == Path(tempfile.gettempdir()).resolve()


def checkpoint_home(checkpoint: Path) -> Path:
    """The run folder of `<run>/checkpoints/x.pt`, else the folder holding the file."""
    folder = checkpoint.parent
    return folder.parent if folder.name == "checkpoints" else folder


def eval_dir(run, checkpoint, which, split, tencrop, reduce, mirror) -> str:
    """`<run>/eval/<split>[-tencrop|-fivecrop[-vote]][-<checkpoint name>]`; the name is left out for best.pt."""
    if split not in SPLITS or (tencrop and reduce not in ("mean", "vote")):
        return scratch_dir()
    if run is not None and Path(str(run)).expanduser().is_dir():
        home = Path(str(run)).expanduser()
    elif checkpoint is not None and Path(str(checkpoint)).expanduser().is_file():
        home = checkpoint_home(Path(str(checkpoint)).expanduser())
    else:
        return scratch_dir()
    stem = Path(str(checkpoint)).stem if checkpoint is not None else str(which)
    views = ("-tencrop" if mirror else "-fivecrop") + ("" if reduce == "mean" else f"-{reduce}") if tencrop else ""
    name = split + views + ("" if stem == "best" else f"-{stem}")
    return str((home / "eval" / name).resolve())


def prune_empty(path: Path, levels: int) -> None:
    """Remove `path` and up to `levels - 1` of its parents while they are empty (after a failed job);
    never the working directory or one above it."""
    path, cwd = Path(path).resolve(), Path.cwd().resolve()
    for _ in range(levels):
        if not path.is_dir() or any(path.iterdir()) or path == cwd or path in cwd.parents:
            return
        path.rmdir()
        path = path.parent


def register() -> None:
    """Called once when cnnexp.runner is imported (see cnnexp/runner/__init__.py)."""
    for name, fn in (("cnnexp_eval_dir", eval_dir), ("cnnexp_scratch_dir", scratch_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)
