"""Run folders: `outputs/<command>/<timestamp>[-N]`, never two runs in one folder; finding a run's
config and checkpoints (no torch import, so commands can check a `run=` before anything heavy)."""

import json
import os
import re
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from cnnexp.utils.errors import UserError

_CLAIMED: set[str] = set()
SPLIT_NAMED_RUN = re.compile(r"[A-Za-z][A-Za-z0-9_]+:")  # run=age:<run>: the shell split run={age:<run>,gender:<run>}
PROBE_FILE = "probe.h5"  # what makes a folder a probe run (`cnnexp probe`): features' network + a linear probe


def claim_run_dir(base: str) -> str:
    """Create and return a fresh `<base>/<timestamp>` folder, adding `-2`, `-3`... when taken.

    `mkdir(exist_ok=False)` makes the claim atomic, so parallel runs started in the same second
    still get folders of their own. Registered as the `cnnexp_run_dir` resolver (cached per config)."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, n = Path(base) / stamp, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            _CLAIMED.add(str(path.resolve()))
            return str(path)
        except FileExistsError:
            n += 1
            path = Path(base) / f"{stamp}-{n}"


def claimed_run_dirs() -> set[str]:
    """Absolute paths of the run folders this process created."""
    return set(_CLAIMED)


DATA_ROOT = "CNNEXP_DATA"  # the environment variable naming the folder that holds the datasets


def data_folder(name: str, fallback=None):
    """`${cnnexp_data:mnist,data/mnist}`: `$CNNEXP_DATA/mnist` when CNNEXP_DATA is set (a dataset default
    that works from any folder), else the fallback (a path relative to the working folder, or null:
    the dataset must be named)."""
    root = os.environ.get(DATA_ROOT)
    return str(Path(root).expanduser() / name) if root else fallback


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("cnnexp_run_dir"):
        OmegaConf.register_new_resolver("cnnexp_run_dir", claim_run_dir, use_cache=True)
    if not OmegaConf.has_resolver("cnnexp_data"):
        OmegaConf.register_new_resolver("cnnexp_data", data_folder)


def current_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def current_overrides() -> list[str]:
    """The key=value overrides of the running Hydra job (its command line's, or a multirun's job's)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def refuse_used_run_dir(run_dir: Path) -> None:
    """A run folder that already holds a run's results is never written into again."""
    for name in ("metrics.json", "checkpoints", "history.csv"):
        if (run_dir / name).exists():
            raise UserError(f"{run_dir} already holds a run ({name} exists); choose a new hydra.run.dir")


def finished_metrics(run_dir: Path) -> dict | None:
    """metrics.json of a run that ended (done, diverged, pruned, stopped early); None when there is none or
    the run was interrupted (SIGINT/SIGTERM: it is to be continued)."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and not metrics.get("interrupted") else None


LEFTOVERS = ("checkpoints", "history.csv", "config.yaml", "metrics.json")  # metrics.json: of an interrupted run


def set_aside(folder: Path) -> None:
    """Move what an interrupted run left (checkpoints, history, events) into `interrupted[-N]/`, so
    the run can start again in its own folder and nothing already written is lost."""
    leftovers = [p for p in folder.iterdir() if p.name in LEFTOVERS or p.name.startswith("events.out.tfevents")]
    if not any(p.name in ("checkpoints", "history.csv") for p in leftovers):
        return
    target, n = folder / "interrupted", 1
    while target.exists():
        n += 1
        target = folder / f"interrupted-{n}"
    target.mkdir()
    for path in leftovers:
        path.rename(target / path.name)
    print(f"restarting the interrupted run; what it had written is kept in {target}")


def save_config(cfg, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def load_run_config(run_dir: Path):
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise UserError(f"{run_dir} is not a cnnexp run folder (no config.yaml); give outputs/train/<run>")
    return OmegaConf.load(path)


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


def is_probe_run(run) -> bool:
    return run is not None and (Path(str(run)).expanduser() / PROBE_FILE).is_file()


def checkpoint_path(run, checkpoint, which: str) -> Path:
    """The file that `run=`, `checkpoint=` and `which=` name (a train run's checkpoint, a probe run's
    probe.h5), found without importing torch (so serve can refuse a wrong one before it listens)."""
    if run is None and checkpoint is None:
        raise UserError("say which model: run=<train run folder> (e.g. outputs/train/<run>) or checkpoint=<file.pt>")
    if is_probe_run(run):
        if checkpoint is not None:
            raise UserError(f"run={run} is a probe run (it holds {PROBE_FILE}); checkpoint= does not apply to it")
        return Path(str(run)).expanduser() / PROBE_FILE
    if run is not None:
        folder = Path(str(run)).expanduser()
        if not folder.is_dir():
            if SPLIT_NAMED_RUN.match(str(run)):
                raise UserError(f"run={run} is not a folder; quote named runs, 'run={{age:<run>,gender:<run>}}', "
                                "or the shell expands the braces into two arguments")
            raise UserError(f"run={run} is not a folder; give a train run folder such as outputs/train/<run>")
        load_run_config(folder)  # a clear error for a folder that is not a run
    if which not in ("best", "last"):
        raise UserError(f"which={which} is not one of: best, last")
    return find_checkpoint(checkpoint if checkpoint is not None else run, which)


def export_dir(run, checkpoint) -> Path:
    """Where `cnnexp export` writes by default: <run>/export, or beside the checkpoint file without a run."""
    return Path(str(run)).expanduser() / "export" if run is not None else Path(str(checkpoint)).expanduser().parent / "export"


def exported_onnx(run, checkpoint, given) -> Path:
    """The ONNX file `serve backend=onnxruntime` runs (`onnx=`, else export_dir/model.onnx), with its JSON."""
    path = Path(str(given)).expanduser() if given else export_dir(run, checkpoint) / "model.onnx"
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise UserError(f"backend=onnxruntime needs {path} and its JSON; run `cnnexp export run={run}` first "
                        "(or give onnx=<file>)")
    return path


def named_runs(run) -> dict[str, str] | None:
    """{name: run folder} for `run={name:<run>,...}` (the schema checked the names), None for one run."""
    if not hasattr(run, "items"):
        return None
    return {str(name): str(folder) for name, folder in run.items()}


@contextmanager
def about_run(name: str):
    """A one-line error inside the block names the run it is about: `run.age=<folder> is not a folder...`
    for a message about `run=`, else `run.age: <message>`."""
    try:
        yield
    except UserError as exc:
        message = str(exc)
        named = message.replace("run=", f"run.{name}=", 1) if message.startswith("run=") else f"run.{name}: {message}"
        raise UserError(named) from exc
