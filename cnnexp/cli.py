"""`cnnexp <command> [overrides]`: pick the command, compose its Hydra config, run it.

Each command is a module with `CONFIG_NAME`, `HELP`, optional `FLAGS` (`--tencrop` ->
`eval.tencrop=true`) and `run(cfg)`; a module may instead define `main(argv) -> int` for
commands that are not one Hydra job (e.g. sub-subcommands).
"""

import importlib
import os
import shutil
import sys
import traceback
from pathlib import Path

from cnnexp.errors import Diverged, UserError
from cnnexp.runs import claimed_run_dirs

COMMANDS = {
    "train": "cnnexp.train",
    "sweep": "cnnexp.sweep",
    "eval": "cnnexp.evaluate",
    "predict": "cnnexp.predict",
    "data": "cnnexp.datatools",
}

HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion", "-sc",
               "--multirun", "-m", "--version")
DEBUG = "CNNEXP_DEBUG"


def conf_dir() -> Path:
    """The config tree: inside the installed package, or `conf/` beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    return here / "conf" if (here / "conf" / "train.yaml").exists() else here.parent / "conf"


def print_usage() -> None:
    lines = ["usage: cnnexp <command> [key=value ...] [--help]", "", "commands:"]
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        lines.append(f"  {name:<9} {module.HELP}")
    lines += ["", "`cnnexp <command> --help` shows its config groups and keys.",
              f"Set {DEBUG}=1 to see tracebacks."]
    print("\n".join(lines))


def fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n" if code == 2 else f"{message}\n")
    return code


def one_line(exc: Exception) -> str:
    """Hydra's multi-line composition errors, folded into one readable line."""
    options = getattr(exc, "options", None)
    missing = getattr(exc, "missing_cfg_file", None)
    if missing and options:
        group, _, choice = missing.rpartition("/")
        return f"unknown {group} '{choice}'; choose one of: {', '.join(options)}"
    text = str(exc)
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
        return f"unknown key '{key}'; `cnnexp <command> --help` lists the keys (add a new one with +{key}=...)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(
        ("full_key", "object_type", "reference_type", "Config search path", "provider", "path", "schema"))]
    return "; ".join(lines[:3]) or exc.__class__.__name__


def compose_config(config_name: str, overrides: list[str]):
    """The composed config (Hydra's compose API), or a one-line error for a bad override."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(one_line(exc).replace("<command>", config_name)) from exc


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
            from cnnexp.engine.loggers import write_json_atomic

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_usage()
        return 0
    name, args = argv[0], argv[1:]
    if name not in COMMANDS:
        return fail(f"unknown command '{name}'; choose one of: {', '.join(COMMANDS)}", 2)
    try:
        module = importlib.import_module(COMMANDS[name])
        if hasattr(module, "main"):
            return module.main(args)
        return launch(name, module, args)
    except (UserError, Diverged) as exc:
        return fail(str(exc), exc.exit_code)
    except SystemExit as exc:  # raised inside a Hydra job (guarded) or by Hydra itself
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Exception as exc:  # a bug, not a user error: keep it short unless debugging
        message, code = describe(exc)
        sys.stderr.write(message + "\n")
        return code
