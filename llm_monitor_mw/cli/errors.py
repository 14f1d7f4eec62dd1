"""The CLI's own error: a mistake by the user, reported as one line with exit status 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad arguments or a file the command cannot use; ``llm-monitor`` prints the message and exits with 2."""
