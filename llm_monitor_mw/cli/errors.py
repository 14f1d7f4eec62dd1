"""The CLI's own errors, each reported as one line: a mistake by the user (status 2), a failed operation (1)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad arguments or a file the command cannot use; ``llm-monitor`` prints the message and exits with 2."""


class CommandFailed(Exception):
    """The operation could not be done (e.g. the port to serve on is taken); printed as one line, exit status 1."""
