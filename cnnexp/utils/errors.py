"""Exceptions the CLI turns into one-line messages and exit codes."""


class UserError(Exception):
    """Bad input the user can fix: printed as `error: <message>`, exit code 2."""

    exit_code = 2


class Diverged(Exception):
    """The training loss became NaN or infinite: exit code 3."""

    exit_code = 3
