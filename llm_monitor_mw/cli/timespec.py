"""Durations (``30d``, ``12h``, ``15m``) and points in time as command-line argument types."""

from __future__ import annotations

import argparse
import time

from .. import timespec
from ..web.params import ParamError, parse_time


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a positive duration (``30d``, ``12h``, ``15m``; see :mod:`llm_monitor_mw.timespec`).

    Raises ``argparse.ArgumentTypeError`` (which argparse turns into a usage error) for anything else.
    """
    try:
        seconds = timespec.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be more than zero")
    return seconds


format_duration = timespec.format_duration


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
