"""Durations (``30d``, ``12h``, ``15m``) and points in time as command-line argument types."""

from __future__ import annotations

import argparse
import re
import time

from ..web.params import ParamError, parse_time

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a positive number with a unit, ``s``, ``m``/``min``, ``h``, ``d`` or ``w`` (``30d``).

    Raises ``argparse.ArgumentTypeError`` (which argparse turns into a usage error) for anything else.
    """
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use a number and a unit, e.g. 30d, 12h, 15m")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be more than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``2592000`` -> ``30d``; the largest unit that divides evenly, else seconds."""
    for unit in ("w", "d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def parse_moment(text: str) -> float:
    """Unix seconds from ISO-8601 (naive = UTC), Unix seconds, or a span back from now (``7d``) — the same
    syntax as the JSON API's ``since``/``until``."""
    try:
        value = parse_time("time", text, now=time.time())
    except ParamError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    if value is None:
        raise argparse.ArgumentTypeError("empty time")
    return value
