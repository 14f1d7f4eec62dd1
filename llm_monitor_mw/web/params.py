"""Query-parameter parsing with errors that name the parameter (turned into 400 responses)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class ParamError(ValueError):
    """A bad query parameter; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def parse_time(name: str, value: str | None, *, now: float | None = None) -> float | None:
    """Unix seconds from ISO-8601 (naive = UTC), a Unix timestamp, or a span back from now (``15m``, ``7d``)."""
    if value is None or value == "":
        return None
    value = value.strip()
    rel = _RELATIVE.match(value)
    if rel:
        return (time.time() if now is None else now) - float(rel.group(1)) * _UNITS[rel.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number != number or number in (float("inf"), float("-inf")):
            raise ParamError(name, "must be a finite number")
        return number
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParamError(
            name, f"{value!r} is not a time: use ISO-8601 (2026-01-31T12:00:00Z), Unix seconds, or a span like 24h"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_int(name: str, value: str | None, *, default: int, minimum: int, maximum: int) -> int:
    """An integer in ``[minimum, maximum]``, or ``default`` when absent."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ParamError(name, f"{value!r} is not an integer") from None
    if not minimum <= number <= maximum:
        raise ParamError(name, f"must be between {minimum} and {maximum}")
    return number


def parse_choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    """One of ``choices`` or ``None`` when absent."""
    if value is None or value == "":
        return None
    if value not in choices:
        raise ParamError(name, f"must be one of {', '.join(choices)}")
    return value


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
