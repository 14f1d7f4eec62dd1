"""Durations (``30d``, ``12h``, ``15m``, ``250ms``): the one grammar the API and pages (spans back from now:
``since=7d``), the command line (``--older-than 30d``) and alert rules (``window = "5m"``) share.

A duration is a decimal number (ASCII digits, at most 12 before the point and 9 after) and a unit: ``ms``, ``s``,
``m``/``min``, ``h``, ``d`` or ``w``, case-insensitive, optionally separated by spaces. Callers add their own rules
(the CLI wants more than zero; alert rules also take a bare number of seconds).
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, float] = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
"""Seconds per unit."""

_DURATION = re.compile(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*(ms|s|min|m|h|d|w)\s*", re.ASCII | re.IGNORECASE)
HINT = "use a number and a unit, e.g. 30d, 12h, 15m, 30s or 250ms"


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``"30d"`` -> ``2592000.0``); :class:`ValueError` naming the grammar for anything else."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{str(text)[:40]!r} is not a duration: {HINT}")
    seconds = float(match.group(1)) * UNITS[match.group(2).lower()]
    if not math.isfinite(seconds):  # pragma: no cover - 12 digits cannot overflow; kept as the boundary's promise
        raise ValueError(f"{text[:40]!r} is not a finite duration")
    return seconds


def is_duration(text: str) -> bool:
    """Whether ``text`` is a duration in this grammar."""
    return isinstance(text, str) and _DURATION.fullmatch(text) is not None


def format_duration(seconds: float) -> str:
    """``2592000`` -> ``30d``: the largest unit that divides evenly, else seconds."""
    for unit in ("w", "d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{seconds:g}s"
