"""`cnnexp <command> [tool] [overrides]`: pick the command and hand it the rest of the arguments.

Every command module (see cnnexp/commands/__init__.py) has `main(argv)`: most are one Hydra app
(`runner.app.app_main`), `data` is one app per tool (`runner.app.tools_main`), `viz` and `sweep` read
their first arguments themselves before they launch Hydra apps.
"""

import importlib
import sys

from cnnexp.commands import COMMANDS
from cnnexp.runner.app import DEBUG, describe
from cnnexp.errors import CnnexpError
from cnnexp.utils import tunings
from cnnexp.utils.text import fold


def print_usage() -> None:
    lines = ["usage: cnnexp <command> [key=value ...] [--help]", "", "commands:"]
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        lines.append(f"  {name:<9} {module.HELP}")
    lines += ["", "`cnnexp <command> --help` shows its config groups and keys.",
              f"Set {DEBUG}=1 to see tracebacks."]
    print(fold("\n".join(lines)))


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
        return importlib.import_module(COMMANDS[name]).main(args)
    except CnnexpError as exc:  # bad input (exit code 2) or an outcome with its own code
        return fail(str(exc), exc.exit_code)
    except SystemExit as exc:  # raised inside a Hydra job (guarded) or by Hydra itself
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # the reader went away (`cnnexp train --help | head`): nothing left to say
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug, not a user error: keep it short unless debugging
        message, code = describe(exc)
        sys.stderr.write(message + "\n")
        return code


def entry() -> None:
    """The `cnnexp` program (and `python -m cnnexp`): `main`, then exit (after `tunings.before_exit`: the
    process-wide settings are the command line's alone, see utils/tunings.py)."""
    code = main()
    tunings.before_exit()
    sys.exit(code)
