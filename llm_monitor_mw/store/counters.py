"""Cumulative counters for Prometheus: totals and latency histograms since the first recorded call, never pruned.

Read only. The writer maintains ``counter_totals`` and ``counter_latency`` in the same transaction as the rows they
count (``store/projections.py``: one pass, one cursor); this module reads them and adds the rows past the cursor
(written but not projected yet: a backlog, or a projection that failed) from raw ``calls`` rows, all in one
snapshot (:meth:`Engine.snapshot`), so every answer is exact and a counter never goes down, whichever process
answers the scrape. Pruning ``calls`` does not lower them (retention projects every row before deleting it).

* ``counter_totals`` — per (instance, provider, model, status): requests (HTTP attempts), failed ones, token sums
  (input, output, cached, cache creation, reasoning) and cost. ``status`` is the HTTP status code as text, or
  ``"error"`` when no response arrived (connection error, timeout).
* ``counter_latency`` — per (instance, provider, model, metric, bucket): how many ``duration`` / ``ttft``
  observations fell into each bucket of :data:`LATENCY_BUCKETS_S` (non-cumulative; the last bucket is ``+Inf``),
  and their sum.

``instance`` is the process (host) that recorded the calls (``''`` for rows written before instances were
recorded); ``instance=None`` in the methods below adds up every instance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .engine.base import Connection, Engine
from .projections import (
    COUNTER_SUMS,
    LATENCY_BUCKETS_S,
    LATENCY_METRICS,
    bucket_case,
    counters_cursor,
    select_counter_latency,
    select_counter_totals,
    sqlite_math,
)
from .schema import COUNTER_TOKEN_COLUMNS as TOKEN_COLUMNS

__all__ = [
    "LATENCY_BUCKETS_S",
    "LATENCY_METRICS",
    "TOKEN_COLUMNS",
    "Counters",
    "Histogram",
    "Snapshot",
    "Totals",
    "bucket_case",
]


@dataclass(frozen=True, slots=True)
class Totals:
    """Cumulative sums for one (provider, model, status); ``model`` is ``""`` when unknown."""

    provider: str
    model: str
    status: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Histogram:
    """One latency histogram: ``counts[i]`` observations in bucket ``i`` (not cumulative; last = ``+Inf``)."""

    provider: str
    model: str
    metric: str
    counts: tuple[int, ...]
    sum_seconds: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the counters hold for one instance (or all), read in one snapshot; ``last_id`` is the last
    ``calls`` row projected into the counter tables (the rows after it were added from raw rows)."""

    totals: list[Totals]
    histograms: list[Histogram]
    last_id: int


class Counters:
    """The Prometheus counters of one store (read only; see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def snapshot(self, instance: str | None = None) -> Snapshot:
        """Totals and histograms of ``instance`` (``None``: every instance), consistent with each other."""
        with self._snapshot() as conn:
            sqlite_math(conn)
            last = counters_cursor(conn, self.engine.dialect)
            totals = self._totals(conn, instance, last)
            histograms = self._histograms(conn, instance, last)
        return Snapshot(totals, histograms, last)

    def totals(self, instance: str | None = None) -> list[Totals]:
        """Cumulative totals per (provider, model, status) of ``instance`` (``None``: every instance)."""
        return self.snapshot(instance).totals

    def histograms(self, instance: str | None = None) -> list[Histogram]:
        """Cumulative latency histograms per (provider, model, metric) of ``instance`` (``None``: all)."""
        return self.snapshot(instance).histograms

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        snapshot = getattr(self.engine, "snapshot", None)
        if snapshot is not None:
            with snapshot() as conn:
                yield conn
            return
        # an engine without snapshots (older builds): one deferred read transaction on SQLite
        conn: Any = self.engine.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")

    def _totals(self, conn: Connection, instance: str | None, last: int) -> list[Totals]:
        cond, params = _instance_filter(instance)
        stored = conn.execute(
            f"SELECT instance, provider, model, status, {', '.join(COUNTER_SUMS)} FROM counter_totals WHERE {cond}",
            params,
        ).fetchall()
        tail = conn.execute(
            select_counter_totals(self.engine.dialect, f"calls.id > ? AND {_raw_instance(cond)}"), [last, *params]
        ).fetchall()
        sums: dict[tuple[str, str, str], list[Any]] = {}
        for row in (*stored, *tail):
            key = (row[1], row[2], row[3])
            acc = sums.get(key)
            values = [v or 0 for v in row[4:]]
            if acc is None:
                sums[key] = values
            else:
                for i, v in enumerate(values):
                    acc[i] += v
        return [Totals(*key, *(int(v) for v in values[:-1]), float(values[-1])) for key, values in sorted(sums.items())]

    def _histograms(self, conn: Connection, instance: str | None, last: int) -> list[Histogram]:
        cond, params = _instance_filter(instance)
        stored = conn.execute(
            f"SELECT instance, provider, model, metric, bucket, n, sum_ms FROM counter_latency WHERE {cond}", params
        ).fetchall()
        where = f"calls.id > ? AND {_raw_instance(cond)}"
        tail = conn.execute(
            select_counter_latency(self.engine.dialect, where), [last, *params] * len(LATENCY_METRICS)
        ).fetchall()
        size = len(LATENCY_BUCKETS_S) + 1
        grouped: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
        for _instance, provider, model, metric, bucket, n, sum_ms in (*stored, *tail):
            counts, total = grouped.setdefault((provider, model, metric), ([0] * size, [0.0]))
            counts[min(max(int(bucket), 0), size - 1)] += int(n)
            total[0] += sum_ms or 0.0
        return [
            Histogram(provider, model, metric, tuple(counts), total[0] / 1000)
            for (provider, model, metric), (counts, total) in sorted(grouped.items())
        ]


def _instance_filter(instance: str | None) -> tuple[str, list[Any]]:
    return ("instance = ?", [instance]) if instance is not None else ("1 = 1", [])


def _raw_instance(cond: str) -> str:
    """The instance condition over raw ``calls`` rows (whose ``instance`` is NULL before instances were kept)."""
    return "coalesce(calls.instance, '') = ?" if cond != "1 = 1" else cond
