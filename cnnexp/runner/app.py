"""Running a command as a Hydra app: compose up front (one-line errors), then `hydra.main` over the
command's primary config, with every failure inside the job turned into one line and an exit code.

A read-only command (`READ_ONLY = True`: eval, predict, export, viz, features and the data tools, which
read and write only where they are told; `run(cfg, overrides)`) is not a Hydra job when it runs once: the config composed up front is the one it runs with, and no job folder
is made. Its multiruns (`-m`) and Hydra's own flags (`--cfg`, `--info`) still go through `hydra.main`."""

import os
import shutil
import sys
import traceback
from pathlib import Path

from cnnexp.runner.compose import compose_config, conf_dir
from cnnexp.schemas import typed
from cnnexp.schemas.keys import check_added, flat_keys
from cnnexp.utils import tunings
from cnnexp.utils.errors import CnnexpError, ConfigError, Interrupted
from cnnexp.utils.jobdirs import is_scratch, prune_empty
from cnnexp.utils.runs import claimed_run_dirs
from cnnexp.utils.text import fold, reflow

HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion", "-sc",
               "--multirun", "-m", "--version")
DEBUG = "CNNEXP_DEBUG"


def check_composes(config_name: str, args: list[str], check=None):
    """Compose once up front so a bad override or value is a one-line error before anything is written:
    the config made typed (the schemas' range checks), or `check(cfg)`, the command's own way to do that;
    a `+key=...` that adds a key nothing reads is refused."""
    overrides = [a for a in args if not a.startswith("hydra")]
    cfg = compose_config(config_name, overrides)
    check_new_keys(config_name, cfg, overrides)
    (check or typed)(cfg)
    return cfg


def check_new_keys(config_name: str, cfg, overrides: list[str]) -> None:
    """`check_added` on the keys the overrides add: `++key=...` of a key the config has only overrides it."""
    forced = [o for o in overrides if o.startswith("++")]
    if forced:
        rest = compose_config(config_name, [o for o in overrides if o not in forced and not o.startswith("hydra")])
        existing = {prefix for key in flat_keys(rest) for prefix in dotted_prefixes(key)}
        overrides = [o for o in overrides if o not in forced or o.split("=", 1)[0].lstrip("+") not in existing]
    check_added(cfg, overrides, config_name)


def dotted_prefixes(key: str) -> list[str]:
    """trainer.epochs -> trainer, trainer.epochs."""
    parts = key.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line a user sees for a failure, and the exit code: a `CnnexpError` says what to fix
    (`error: ...` for bad input, exit code 2) or what happened (diverged, lost a peer); anything else is
    a bug in cnnexp or a library under it: an internal error (its traceback under CNNEXP_DEBUG=1)."""
    if isinstance(exc, CnnexpError):
        return (f"error: {exc}" if exc.exit_code == 2 else str(exc)), exc.exit_code
    if os.environ.get(DEBUG):
        traceback.print_exception(exc)
    return f"internal error: {exc.__class__.__name__}: {exc} (set {DEBUG}=1 for the traceback)", 1


def guarded(command, cfg):
    """Run a command's job; in a multirun, a failed job is recorded in its folder and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    out = Path(HydraConfig.get().runtime.output_dir)
    if getattr(command, "TUNED", True):  # a library sweep's jobs (TUNED=False) leave the process as it is
        tunings.job_start()  # here, not in `cnnexp` alone: a launcher's processes run jobs through this too
    try:
        # a job of a multirun (not composed up front) meets the checks here
        # (`++key`, which may only override a key, needs a second composition: checked up front alone)
        check_added(cfg, [o for o in HydraConfig.get().overrides.task if not o.startswith("++")],
                    HydraConfig.get().job.config_name)
        typed(cfg)
        if getattr(command, "READ_ONLY", False):
            return command.run(cfg, list(HydraConfig.get().overrides.task))
        return command.run(cfg)
    except Interrupted as exc:  # saved and stopped on a signal: a sweep stops too, and is continued by re-running it
        if multirun:
            sys.stderr.write(f"{exc.message}; to finish the sweep, run it again with sweep.dir={out.parent}\n")
        else:
            sys.stderr.write(f"{exc}\n")
        sys.exit(exc.exit_code)
    except Exception as exc:
        message, code = describe(exc)
        sys.stderr.write(message + "\n")
        if multirun:
            from cnnexp.utils.files import write_json_atomic

            write_json_atomic({"error": str(exc), "exit_code": code}, out / "failed.json")
            return None
        remove_if_unused(out)
        sys.exit(code)
    finally:
        if is_scratch(out):  # the empty folder of a command that writes nothing there (serve, sweep summarize)
            prune_empty(out, 1)


def remove_if_unused(run_dir: Path) -> None:
    """A run that failed before producing anything leaves no folder behind: only a folder this process
    claimed itself (never a user's `hydra.run.dir`), and only while it holds nothing but Hydra's files."""
    if not run_dir.is_dir() or str(run_dir.resolve()) not in claimed_run_dirs():
        return
    hydra_only = {".hydra", "config.yaml"} | {p.name for p in run_dir.glob("*.log")}
    if all(p.name in hydra_only for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        prune_empty(run_dir.parent, 2)  # outputs/train, outputs: made for this run alone


def launch(name: str, command, args: list[str]) -> int:
    """Run `command` (CONFIG_NAME, run(cfg), optional FLAGS and check(cfg)) as the Hydra app
    `cnnexp <name>`: `--help` lists the command's own groups and keys, `--cfg job`, `-m` and launchers
    are Hydra's."""
    import hydra

    for flag, override in getattr(command, "FLAGS", {}).items():
        args = [override if a == flag else a for a in args]
    if any(a in ("--help", "-h") for a in args):
        print(help_text(command.CONFIG_NAME, [a for a in args if a not in ("--help", "-h")]))
        return 0
    data_parallel = False
    if not any(a.split("=")[0] in HYDRA_FLAGS for a in args):
        cfg = check_composes(command.CONFIG_NAME, args, getattr(command, "check", None))
        if getattr(command, "READ_ONLY", False):
            tunings.job_start()
            command.run(cfg, [a for a in args if not a.startswith("hydra")])
            return 0
        data_parallel = getattr(command, "DATA_PARALLEL", False) and int(os.environ.get("WORLD_SIZE", "1")) > 1
        if data_parallel:  # started by torchrun: join the other processes before Hydra makes a folder
            from cnnexp.engine import distributed

            distributed.start(cfg.trainer.ddp_timeout)
            args = [*args, *shared_run_dir(command.CONFIG_NAME, args)]

    @hydra.main(config_path=str(conf_dir()), config_name=command.CONFIG_NAME, version_base=None)
    def job(cfg):
        return guarded(command, cfg)

    sys.argv = [f"cnnexp {name}", *args]
    try:
        job()
    finally:
        if data_parallel:
            distributed.stop()
    return 0


def app_main(name: str, module_name: str):
    """`main(argv)` of a command that is one Hydra app (the module's CONFIG_NAME, run, FLAGS, check)."""
    return lambda argv: launch(name, sys.modules[module_name], argv)


def tools_main(name: str, tools: dict):
    """`main(argv)` of a command made of tools (`cnnexp data <tool>`), each one Hydra app."""
    def main(argv: list[str]) -> int:
        if not argv or argv[0] in ("-h", "--help", "help"):
            lines = [f"usage: cnnexp {name} <tool> [key=value ...] [--help]", "", "tools:"]
            width = max(11, *map(len, tools))
            lines += [f"  {tool_name:<{width}} {tool.HELP}" for tool_name, tool in tools.items()]
            print(fold("\n".join([*lines, "", f"`cnnexp {name} <tool> --help` lists its keys and defaults."])))
            return 0
        if argv[0] not in tools:
            raise ConfigError(f"unknown {name} tool '{argv[0]}'; choose one of: {', '.join(tools)}")
        return launch(f"{name} {argv[0]}", tools[argv[0]], argv[1:])
    return main


def shared_run_dir(config_name: str, args: list[str]) -> list[str]:
    """Under torchrun: rank 0 claims the run folder (hydra.run.dir, resolved once) and tells the other
    ranks; they use it without writing Hydra's files or a log there. Hydra overrides for this rank."""
    from cnnexp.engine import distributed

    folder = None
    if distributed.is_rank_0():
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None, job_name=config_name):
            cfg = compose(config_name, overrides=args, return_hydra_config=True)
            folder = str(OmegaConf.select(cfg, "hydra.run.dir"))
    folder = distributed.share(folder)
    overrides = [f"hydra.run.dir='{folder}'"]
    if not distributed.is_rank_0():
        overrides += ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    return overrides


def help_text(config_name: str, overrides: list[str]) -> str:
    """The command's header, the config groups its defaults list uses (with their options), its keys
    with their defaults and comments (the comments beside them in conf/, as the site's reference shows
    them) and its footer (examples)."""
    from cnnexp.runner.comments import commented_keys, keys_help

    cfg, options = compose_with_groups(config_name, [a for a in overrides if not a.startswith("hydra")])
    help_cfg = cfg.hydra.help
    groups = [f"{group}: {', '.join(choices)}" for group, choices in options.items()]
    parts = [reflow(str(help_cfg.header))]
    if groups:
        parts += ["== Config groups (group=choice) ==", "\n".join(groups)]
    parts += ["== Config (key=value) ==", keys_help(commented_keys(config_name, cfg)),
              str(help_cfg.footer)]
    return fold("\n\n".join(parts))


def compose_with_groups(config_name: str, overrides: list[str]):
    """(config with its hydra node, {group: options}) for the groups in the config's defaults tree."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cnnexp.runner.compose import one_line

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None, job_name=config_name):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            # The loader's own repository: its get_group_options() deep-copies the whole repository on every
            # call (a third of `--help`'s time); listing a group's files changes nothing.
            repository = GlobalHydra.instance().config_loader().repository
            groups = [g for g in cfg.hydra.runtime.choices if not g.startswith("hydra")]
            return cfg, {g: repository.get_group_options(g) for g in sorted(groups)}
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(one_line(exc).replace("<command>", config_name)) from exc
