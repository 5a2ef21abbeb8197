"""cnnexp's exceptions: one base class, `CnnexpError`, for everything a caller can act on.

A library caller catches `CnnexpError` (or one of its kinds); the command line turns each into one line
and an exit code (`cnnexp.cli`): bad input is `error: <message>` with exit code 2, the others print
their message with their own code. Any other exception is a bug and shows as an internal error.

    CnnexpError
    ├── UserError            bad input the user can fix (exit code 2)
    │   ├── ConfigError      a config value, key, group choice or override
    │   ├── DataError        a dataset, image, file or folder of data
    │   ├── RunError         a run folder, checkpoint or sweep folder
    │   └── WeightsError     starting weights (a file, a weights name, a download)
    ├── Diverged             the training loss became NaN or infinite (exit code 3)
    ├── Interrupted          a signal stopped training after saving it (exit code 128 + the signal)
    ├── PeerLost             a data-parallel run lost a process (exit code 1)
    └── Pruned               a search stopped this run early (exit code 0)

`UserError` raised without a kind is bad input not yet classified (most of the code raises it)."""


class CnnexpError(Exception):
    """The base class: anything cnnexp raises on purpose."""

    exit_code = 2


class UserError(CnnexpError):
    """Bad input the user can fix: printed as `error: <message>`, exit code 2."""


class ConfigError(UserError):
    """A config value out of range, an unknown key or group choice, a malformed override."""


class DataError(UserError):
    """A dataset that cannot be read: a missing or damaged file or folder, an unreadable image."""


class RunError(UserError):
    """A run folder or checkpoint that cannot be used: missing, damaged, or of another model."""


class WeightsError(UserError):
    """Starting weights that cannot be loaded: a missing file, an unknown name, a failed download."""


class Diverged(CnnexpError):
    """The training loss became NaN or infinite: exit code 3."""

    exit_code = 3


class Interrupted(CnnexpError):
    """SIGINT/SIGTERM (or a notebook's interrupt) stopped the run at a step boundary after saving it: exit
    code 128 + the signal (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process the signal ended."""

    def __init__(self, message: str, signum: int, resume_hint: str = ""):
        super().__init__(message + (f"; {resume_hint}" if resume_hint else ""))
        self.message, self.exit_code = message, 128 + signum


class PeerLost(CnnexpError):
    """A data-parallel run lost one of its processes (killed, or silent past `trainer.ddp_timeout`):
    every rank stops with this one line instead of waiting for ever; exit code 1."""

    exit_code = 1


class Pruned(CnnexpError):
    """A search stopped this run at an evaluation (its validation error was hopeless): metrics.json
    says `pruned`, and the search goes on."""

    exit_code = 0


__all__ = ["CnnexpError", "ConfigError", "DataError", "Diverged", "Interrupted", "PeerLost", "Pruned", "RunError",
           "UserError", "WeightsError"]
