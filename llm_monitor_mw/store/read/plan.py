"""Time windows: which parts of a range the roll-ups answer (whole hours, whole days) and which raw rows do."""

from __future__ import annotations

import math
from dataclasses import dataclass

HOUR = 3600
DAY = 86400
RAW_MAX_SPAN = 3 * HOUR
"""Ranges up to this long are answered from raw rows (minute buckets; roll-ups are hourly)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of a time range answered from one source: ``raw`` rows, or the ``hour``/``day`` roll-ups."""

    source: str
    since: float
    until: float


def plan(since: float, until: float, step: int, *, rolled: bool = True) -> list[Segment]:
    """Split ``[since, until)`` into raw edges, whole hours and whole days (only granularities ``<= step``).

    ``step`` 0 means one bucket for the whole range, which every granularity divides.
    """
    step = step or DAY
    if not rolled or until - since <= RAW_MAX_SPAN or step < HOUR:
        return [Segment("raw", since, until)]
    h0, h1 = math.ceil(since / HOUR) * HOUR, math.floor(until / HOUR) * HOUR
    if h0 >= h1:
        return [Segment("raw", since, until)]
    segments = [Segment("raw", since, h0)] if since < h0 else []
    d0, d1 = math.ceil(h0 / DAY) * DAY, math.floor(h1 / DAY) * DAY
    if step >= DAY and d0 < d1:
        if h0 < d0:
            segments.append(Segment("hour", h0, d0))
        segments.append(Segment("day", d0, d1))
        if d1 < h1:
            segments.append(Segment("hour", d1, h1))
    else:
        segments.append(Segment("hour", h0, h1))
    if h1 < until:
        segments.append(Segment("raw", h1, until))
    return segments


def bucket_starts(since: float, until: float, step: int) -> list[int]:
    """Start of every ``step``-second bucket (aligned to the epoch, UTC) that overlaps ``[since, until)``."""
    first = math.floor(since / step) * step
    return list(range(first, math.ceil(until / step) * step, step)) or [first]
