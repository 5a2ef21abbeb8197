"""`cnnexp <command> [tool] [overrides]`: pick the command, run it as its Hydra app.

A command module (see cnnexp/commands/__init__.py) is one Hydra app; a module with `TOOLS` (e.g.
`data`) names one app per tool, chosen by the first argument; a module with `main(argv)` (e.g.
`sweep`, which launches the train app in multirun) takes the arguments itself.
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


def run_tool(name: str, module, args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(f"usage: cnnexp {name} <tool> [key=value ...] [--help]\n\ntools:")
        for tool_name, tool in module.TOOLS.items():
            print(f"  {tool_name:<11} {tool.HELP}")
        print(f"\n`cnnexp {name} <tool> --help` lists its keys and defaults.")
        return 0
    if args[0] not in module.TOOLS:
        raise UserError(f"unknown {name} tool '{args[0]}'; choose one of: {', '.join(module.TOOLS)}")
    return launch(f"{name} {args[0]}", module.TOOLS[args[0]], args[1:])


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
        if hasattr(module, "TOOLS"):
            return run_tool(name, module, args)
        if hasattr(module, "main"):
            return module.main(args)
        return launch(name, module, args)
    except (UserError, Diverged) as exc:
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
