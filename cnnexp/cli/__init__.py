"""`cnnexp <command> [overrides]`: pick the command, compose its Hydra config, run it.

Each command is a module with `CONFIG_NAME`, `HELP`, optional `FLAGS` (`--tencrop` ->
`eval.tencrop=true`) and `run(cfg)`; a module may instead define `main(argv) -> int` for
commands that are not one Hydra job (e.g. sub-subcommands).
"""

import importlib
import sys

from cnnexp.commands import COMMANDS
from cnnexp.config.app import DEBUG, describe, launch
from cnnexp.utils.errors import Diverged, UserError


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
