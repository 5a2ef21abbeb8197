"""Running a command as a Hydra app: compose up front (one-line errors), then `hydra.main` over the
command's primary config, with every failure inside the job turned into one line and an exit code."""

import os
import shutil
import sys
import traceback
from pathlib import Path

from cnnexp.config.compose import compose_config, conf_dir
from cnnexp.utils.errors import Diverged, UserError
from cnnexp.utils.runs import claimed_run_dirs

HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion", "-sc",
               "--multirun", "-m", "--version")
DEBUG = "CNNEXP_DEBUG"


def check_composes(config_name: str, args: list[str]) -> None:
    """Compose once up front so a bad override is a one-line error before anything is written."""
    compose_config(config_name, [a for a in args if not a.startswith("hydra")])


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line a user sees for a failure, and the exit code."""
    if isinstance(exc, UserError):
        return f"error: {exc}", exc.exit_code
    if isinstance(exc, Diverged):
        return str(exc), exc.exit_code
    if os.environ.get(DEBUG):
        traceback.print_exception(exc)
    return f"internal error: {exc.__class__.__name__}: {exc} (set {DEBUG}=1 for the traceback)", 1


def guarded(run, cfg):
    """Run a command's job; in a multirun, a failed job is recorded in its folder and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        return run(cfg)
    except Exception as exc:
        message, code = describe(exc)
        sys.stderr.write(message + "\n")
        if multirun:
            from cnnexp.utils.files import write_json_atomic

            write_json_atomic({"error": str(exc), "exit_code": code}, out / "failed.json")
            return None
        remove_if_unused(out)
        sys.exit(code)


def remove_if_unused(run_dir: Path) -> None:
    """A run that failed before producing anything leaves no folder behind: only a folder this process
    claimed itself (never a user's `hydra.run.dir`), and only while it holds nothing but Hydra's files."""
    if not run_dir.is_dir() or str(run_dir.resolve()) not in claimed_run_dirs():
        return
    hydra_only = {".hydra", "config.yaml"} | {p.name for p in run_dir.glob("*.log")}
    if all(p.name in hydra_only for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def launch(name: str, module, args: list[str]) -> int:
    import hydra

    for flag, override in getattr(module, "FLAGS", {}).items():
        args = [override if a == flag else a for a in args]
    if not any(a.split("=")[0] in HYDRA_FLAGS for a in args):
        check_composes(module.CONFIG_NAME, args)

    @hydra.main(config_path=str(conf_dir()), config_name=module.CONFIG_NAME, version_base=None)
    def job(cfg):
        return guarded(module.run, cfg)

    sys.argv = [f"cnnexp {name}", *args]
    job()
    return 0


