"""Exceptions the CLI turns into one-line messages and exit codes."""


class UserError(Exception):
    """Bad input the user can fix: printed as `error: <message>`, exit code 2."""

    exit_code = 2


class Diverged(Exception):
    """The training loss became NaN or infinite: exit code 3."""

    exit_code = 3


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the run at a step boundary after saving it: exit code 128 + the signal
    (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process the signal ended."""

    def __init__(self, message: str, signum: int, resume_hint: str = ""):
        super().__init__(message + (f"; {resume_hint}" if resume_hint else ""))
        self.message, self.exit_code = message, 128 + signum


class PeerLost(Exception):
    """A data-parallel run lost one of its processes (killed, or silent past `trainer.ddp_timeout`):
    every rank stops with this one line instead of waiting for ever; exit code 1."""

    exit_code = 1


class Pruned(Exception):
    """A search stopped this run at an evaluation (its validation error was hopeless): metrics.json
    says `pruned`, and the search goes on."""

    exit_code = 0
