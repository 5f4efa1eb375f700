"""Exceptions a tool turns into one line on stderr and an exit status."""

from typing import Optional

__all__ = ["ToolError", "UsageError", "CommandError", "Interrupted", "Status"]


class ToolError(Exception):
    """A condition the user can cause or fix: printed as ``tool: message``, exit 1."""

    exit_status = 1


class UsageError(ToolError):
    """Bad command-line input: ``tool: message`` and a one-line hint, exit 2."""

    exit_status = 2

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.hint = hint


class CommandError(ToolError):
    """The command of ``-c`` cannot run: exit 127 (not found) or 126 (found
    but not executable), as shells do."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class Interrupted(BaseException):
    """Raised at a safe point after an end signal, so that every ``with``
    block unwinds.

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
