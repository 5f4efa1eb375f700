"""Exceptions a tool turns into one line on stderr and an exit status."""


class ToolError(Exception):
    """A condition the user can cause or fix: printed as ``tool: message``, exit 1."""

    exit_status = 1


class UsageError(ToolError):
    """Bad command-line input: printed with the usage text, exit 2."""

    exit_status = 2


class Interrupted(BaseException):
    """Raised from a signal handler so that every ``with`` block unwinds.

    A BaseException, so that ``except Exception`` in library code never
    swallows a Ctrl-C or SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Status:
    """Set by a session whose teardown could not restore every setting:
    the run then exits 1 even if tracing itself went well."""
    restore_failed = False
