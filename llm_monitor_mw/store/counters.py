"""Cumulative counters for Prometheus: totals and latency histograms since the first recorded call, never pruned.

Prometheus wants counters that only grow, whichever worker process answers the scrape. So the figures come from
the shared SQLite file, not from any one process's memory: two tables are brought up to date incrementally by row
id of ``calls`` (``counters_state.last_id``, cursor ``'calls'``) each time they are read, in ``BEGIN IMMEDIATE``
transactions of at most :data:`CHUNK` rows that re-read the cursor under the write lock, so several processes
refreshing at once never count a row twice. Pruning ``calls`` does not lower them.

* ``counter_totals`` — per (provider, model, status): requests (HTTP attempts), failed ones, token sums (input,
  output, cached, cache creation, reasoning) and cost. ``status`` is the HTTP status code as text, or ``"error"``
  when no response arrived (connection error, timeout).
* ``counter_latency`` — per (provider, model, metric, bucket): how many ``duration`` / ``ttft`` observations fell
  into each bucket of :data:`LATENCY_BUCKETS_S` (non-cumulative; the last bucket is ``+Inf``), and their sum.

The bucket index is computed in SQL (one ``CASE``), so catching up a million rows is a few range scans.
The cursor assumes row ids only grow: pruning must keep the newest row (``calls`` has no ``AUTOINCREMENT``).
Sums are ``total()`` and ``+``, which cannot raise (SQLite's ``sum()`` raises on integer overflow).

``counters_state`` also remembers which label values ``/metrics`` has exposed under their own name (rows named
``exposed:<label>:<value>``, see :meth:`Counters.remember_shown`), so that the label budget of
``web/cardinality.py`` keeps showing the same values in every process and after a restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from .database import Database
from .schema import CALLS
from .schema import COUNTER_TOKEN_COLUMNS as TOKEN_COLUMNS
from .values import plausible

LATENCY_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Upper bounds (seconds, inclusive) of the latency histogram buckets; a last ``+Inf`` bucket takes the rest.

LLM latencies span embeddings (tens of ms) to long generations and reasoning models (minutes)."""
LATENCY_METRICS: dict[str, str] = {"duration": "duration_ms", "ttft": "ttft_ms"}
"""Histogram metric name -> ``calls`` column (milliseconds)."""
CHUNK = 25_000
"""Rows counted per write transaction, so the writer never waits long for the lock."""

_TOTAL_SUMS = ("requests", "errors", *TOKEN_COLUMNS, "cost_usd")
# total(), never sum(): SQLite's sum() of integers raises "integer overflow" past 2**63 (one stored row of 2**63-1
# tokens did, and /metrics answered llm_monitor_database_up 0 for good); total() adds in floating point, and an
# INTEGER column stores the result back as an integer whenever it is one exactly (any realistic count).
_TOTAL_EXPRS = (
    "count(*)",
    "count(CASE WHEN ok = 0 THEN 1 END)",
    *(f"total({plausible(c)})" for c in TOKEN_COLUMNS),
    f"total({plausible('cost_usd')})",
)
_KEY = "provider, coalesce(model, '')"
_RANGE = f"{CALLS}.id > ? AND {CALLS}.id <= ?"


def bucket_case(column: str) -> str:
    """SQL giving the index in :data:`LATENCY_BUCKETS_S` of ``column`` (ms): the first bound it does not exceed."""
    whens = " ".join(f"WHEN {column} <= {bound * 1000!r} THEN {i}" for i, bound in enumerate(LATENCY_BUCKETS_S))
    return f"CASE {whens} ELSE {len(LATENCY_BUCKETS_S)} END"


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
    """Everything the counters hold, read in one transaction; ``last_id`` is the last ``calls`` row counted."""

    totals: list[Totals]
    histograms: list[Histogram]
    last_id: int
    shown: frozenset[tuple[str, str]] = frozenset()
    """``(label, value)`` pairs that ``/metrics`` has exposed under their own name before (see ``remember_shown``)."""


_SHOWN = "exposed:"
"""Prefix of the ``counters_state`` rows naming a label value exposed before: ``exposed:<label>:<value>``."""


def _shown(conn: sqlite3.Connection) -> frozenset[tuple[str, str]]:
    rows = conn.execute(
        "SELECT name FROM counters_state WHERE name >= ? AND name < ?", (_SHOWN, _SHOWN[:-1] + ";")
    ).fetchall()
    pairs = (name[len(_SHOWN) :].split(":", 1) for (name,) in rows)
    return frozenset((p[0], p[1]) for p in pairs if len(p) == 2)


def _last_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT last_id FROM counters_state WHERE name = 'calls'").fetchone()
    return int(row[0]) if row else 0


def _count(conn: sqlite3.Connection, hi: int) -> int:
    """Add the rows ``(cursor, hi]`` to the counters and move the cursor; returns the cursor afterwards."""
    lo = _last_id(conn)  # re-read under the write lock: another process may have counted these rows meanwhile
    if lo >= hi:
        return lo
    update = ", ".join(f"{c} = {c} + excluded.{c}" for c in _TOTAL_SUMS)
    conn.execute(
        f"""INSERT INTO counter_totals (provider, model, status, {", ".join(_TOTAL_SUMS)})
            SELECT {_KEY}, coalesce(CAST(status_code AS TEXT), 'error'), {", ".join(_TOTAL_EXPRS)}
            FROM {CALLS} WHERE {_RANGE} GROUP BY 1, 2, 3
            ON CONFLICT (provider, model, status) DO UPDATE SET {update}""",
        (lo, hi),
    )
    for metric, column in LATENCY_METRICS.items():
        conn.execute(
            f"""INSERT INTO counter_latency (provider, model, metric, bucket, n, sum_ms)
                SELECT {_KEY}, '{metric}', {bucket_case(column)}, count(*), total({plausible(column)})
                FROM {CALLS} WHERE {_RANGE} AND {column} IS NOT NULL GROUP BY 1, 2, 4
                ON CONFLICT (provider, model, metric, bucket)
                DO UPDATE SET n = n + excluded.n, sum_ms = sum_ms + excluded.sum_ms""",
            (lo, hi),
        )
    conn.execute(
        "INSERT INTO counters_state (name, last_id) VALUES ('calls', ?)"
        " ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
        (hi,),
    )
    return hi


class Counters:
    """The Prometheus counters of one database: :meth:`refresh` catches up with ``calls``, :meth:`snapshot` reads."""

    def __init__(self, db: Database, *, chunk: int = CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be positive")
        self.db = db
        self.chunk = chunk

    def refresh(self) -> int:
        """Count every ``calls`` row added since the last refresh (by any process); returns the cursor.

        Nothing new costs two indexed reads. Each chunk of :attr:`chunk` rows is one write transaction.
        """
        conn = self.db.connect().conn
        top = conn.execute(f"SELECT max(id) FROM {CALLS}").fetchone()[0] or 0
        last = _last_id(conn)
        while last < top:
            hi = min(top, last + self.chunk)
            last = max(hi, self.db.write(lambda c, hi=hi: _count(c, hi)))
        return last

    def snapshot(self) -> Snapshot:
        """All counters, consistent with each other (one read transaction). Call :meth:`refresh` first."""
        conn = self.db.connect().conn
        conn.execute("BEGIN")
        try:
            totals = [
                Totals(*row)
                for row in conn.execute(
                    f"SELECT provider, model, status, {', '.join(_TOTAL_SUMS)} FROM counter_totals ORDER BY 1, 2, 3"
                )
            ]
            hist_rows = conn.execute(
                "SELECT provider, model, metric, bucket, n, sum_ms FROM counter_latency ORDER BY 1, 2, 3, 4"
            ).fetchall()
            last_id = _last_id(conn)
            shown = _shown(conn)
        finally:
            conn.execute("COMMIT")
        return Snapshot(totals, _histograms(hist_rows), last_id, shown)

    def remember_shown(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(label, value)`` pairs as exposed under their own name (label names hold no ``:``)."""
        rows = [(f"{_SHOWN}{label}:{value}",) for label, value in pairs]
        if rows:
            self.db.write(
                lambda c: c.executemany(
                    "INSERT INTO counters_state (name, last_id) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", rows
                )
            )


def _histograms(rows: list[tuple[str, str, str, int, int, float]]) -> list[Histogram]:
    """Group ``counter_latency`` rows (sorted by key) into one :class:`Histogram` per (provider, model, metric)."""
    size = len(LATENCY_BUCKETS_S) + 1
    grouped: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
    for provider, model, metric, bucket, n, sum_ms in rows:
        counts, total = grouped.setdefault((provider, model, metric), ([0] * size, [0.0]))
        counts[min(max(bucket, 0), size - 1)] += n
        total[0] += sum_ms
    return [
        Histogram(provider, model, metric, tuple(counts), total[0] / 1000)
        for (provider, model, metric), (counts, total) in grouped.items()
    ]
