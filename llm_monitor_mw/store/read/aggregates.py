"""The figures the roll-ups keep, as the read side uses them.

They are defined once, in :mod:`llm_monitor_mw.store.projections` (the SQL the writer's pass runs over new rows):
the read side runs the very same expressions over raw rows (the edges of a range, rows past the projection
cursor), so roll-ups and raw rows answer alike. Importing them writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..projections import (
    CALL_SUMS,
    DIM_SUMS,
    DIMENSIONS,
    FLOAT_SUMS,
    HIST_METRICS,
    HIST_PER_DOUBLING,
    call_sum_exprs,
    dim_sources,
    dim_sum_exprs,
    hist_bucket,
    latency_known,
    percentile,
    sqlite_math,
)

SUMS = CALL_SUMS
"""The sums of ``rollup_calls_*``, per (bucket, provider, model)."""
METRICS: tuple[tuple[str, str], ...] = tuple(HIST_METRICS.items())
"""The latency histograms: metric name and ``calls`` column."""

__all__ = [
    "DIMENSIONS",
    "DIM_SUMS",
    "FLOAT_SUMS",
    "HIST_PER_DOUBLING",
    "METRICS",
    "SUMS",
    "call_sum_exprs",
    "dim_sources",
    "dim_sum_exprs",
    "figures",
    "hist_bucket",
    "latency_known",
    "percentile",
    "sqlite_math",
]


def figures(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Named sums as the pages use them: counts and token sums as ints (``total()`` answers floats, and an engine
    may answer ``Decimal``), a sum that overflowed to a non-finite float as ``None`` (unknown)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if value.__class__ is float or isinstance(value, Decimal):
            value = float(value)
            if value - value != 0.0:
                value = None
            elif name not in FLOAT_SUMS:
                value = int(value)
        out[name] = value
    return out
