"""Projections: the dashboard's roll-ups and the ``/metrics`` counters, maintained on the write side.

One incremental pass with one cursor. ``rollup_state`` row ``'calls'`` holds the last ``calls.id`` projected; the
writer, inside the same transaction as its inserts, locks that row (PostgreSQL: ``SELECT … FOR UPDATE``, taken
*before* the insert, so ids grow in commit order across processes and hosts; SQLite: ``BEGIN IMMEDIATE`` already
serialises writers), inserts its batch, projects the rows ``(cursor, hi]`` (at most ``limit`` rows) and moves the
cursor. A backlog (an old database, or a writer that fell behind) is caught up by the same function in small
transactions: see :func:`catch_up` and :data:`LIMIT`.

What the pass maintains:

* ``rollup_calls_{hour,day}`` — per (UTC hour/day, provider, model): :data:`CALL_SUMS`;
* ``rollup_latency_models_{hour,day}`` / ``rollup_latency_{hour,day}`` — a log-scale histogram of ``duration_ms``
  (metric ``d``) and ``ttft_ms`` (``t``), :data:`HIST_PER_DOUBLING` buckets per doubling, with and without
  provider/model;
* ``rollup_quantiles_{hour,day}`` — p50/p95 per metric and hour/day, recomputed from the histogram of every
  hour/day the pass touched (with :func:`percentile`, the one percentile function of the package);
* ``rollup_dims_{hour,day}`` — per (dimension, hour/day, value) of :data:`DIMENSIONS`: :data:`DIM_SUMS`;
* ``counter_totals`` / ``counter_latency`` — cumulative, never pruned, per ``instance`` first: totals per
  (provider, model, status) and latency histograms in the fixed buckets of :data:`LATENCY_BUCKETS_S`.

Every figure is defined once here, as SQL over raw ``calls`` rows (``select_*`` functions). The pass runs these
``SELECT``s over the new rows and adds their results into the tables; readers run the very same ``SELECT``s over the
rows past the cursor (not projected yet) and add them to what they read, in one snapshot, so answers are exact.

Two histogram layouts, on purpose. Prometheus needs ``le`` bounds that are exact (``x <= le``), fixed across
versions and few (each bucket is a series per provider/model); the dashboard needs fine log-scale buckets to
estimate percentiles within ±4.5 %. No log bucket edge falls on 0.05 s, 0.25 s, 2.5 s…, and a log bucket is
lower-inclusive, so the Prometheus buckets cannot be derived from the log histogram without changing their bounds
(and every user's queries over ``le``). Both are filled in this one pass; percentiles are computed in one place.

A projection that fails (a foreign writer's value no bound anticipated, say) is rolled back to a savepoint: the
inserted rows still commit, the cursor stays, readers keep answering exactly from raw rows, and the failure is
logged once and counted (:attr:`Projector.failures`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .engine.base import Connection, Dialect, Engine
from .schema import BACKFILLS, CALLS, ROLLUP_V7_SUMS, TRACE_ATTRIBUTES, TRACE_SUMS, TRACES
from .schema import COUNTER_TOKEN_COLUMNS as TOKEN_COLUMNS
from .values import PLAUSIBLE, plausible

logger = logging.getLogger("llm_monitor_mw")

HOUR = 3600
DAY = 86400
CURSOR = "calls"
"""The ``rollup_state`` row holding the last ``calls.id`` projected."""
LIMITS = {"sqlite": 1000, "postgresql": 1000}
"""Rows projected per transaction at most, per engine (the writer's default batch is 1,000: live traffic is
projected as it is inserted), so that no transaction holds the cursor lock much more than ~100 ms even on sparse
data (every row its own roll-up groups, the worst case: measured by ``benchmarks/projection_lag.py``; a backlog
spanning a day costs ~60-90 ms per 1,000 rows on PostgreSQL, ~40 ms on SQLite, 2-vCPU VM). A busy store's rows
share groups and project several times faster."""
LIMIT = LIMITS["sqlite"]
HIST_PER_DOUBLING = 8
"""Log-histogram resolution: a bucket spans a factor 2**(1/8); its midpoint is within ±4.5 % of any value in it."""
LATENCY_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Upper bounds (seconds, inclusive) of the Prometheus latency buckets; a last ``+Inf`` bucket takes the rest.

LLM latencies span embeddings (tens of ms) to long generations and reasoning models (minutes)."""
LATENCY_METRICS: dict[str, str] = {"duration": "duration_ms", "ttft": "ttft_ms"}
"""Prometheus histogram metric -> ``calls`` column (milliseconds)."""
HIST_METRICS: dict[str, str] = {"d": "duration_ms", "t": "ttft_ms"}
"""Roll-up histogram metric -> ``calls`` column (milliseconds)."""
DIMENSIONS = ("route", "user", "tag", "status", "error_type", "key")
"""``key``: the API key's fingerprint (calls made with a key; see :mod:`.read.keys`)."""

CALL_SUMS = (
    "requests",
    "errors",
    "n429",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "tokens_n",
    "cost_usd",
    "cost_n",
    "duration_sum",
    "duration_n",
    "ttft_sum",
    "ttft_n",
    *ROLLUP_V7_SUMS,
)
"""The columns of ``rollup_calls_*`` after its key (ts, provider, model); the last two since migration 7."""
DIM_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "cost_n")
"""The columns of ``rollup_dims_*`` after its key (ts, dim, value); ``cost_n`` (calls with a known cost, so that a
sum of 0 over calls none of which was priced reads as unknown) since migration 8."""
FLOAT_SUMS = frozenset({"cost_usd", "duration_sum", "ttft_sum"})
"""The sums that are floats; the others are counts and token sums, ints."""
COUNTER_SUMS = ("requests", "errors", *TOKEN_COLUMNS, "cost_usd")
"""The columns of ``counter_totals`` after its key (instance, provider, model, status)."""

_IN_RANGE = f"{CALLS}.id > ? AND {CALLS}.id <= ?"
_TIMED = f"{CALLS}.started_at > -{PLAUSIBLE} AND {CALLS}.started_at < {PLAUSIBLE}"
"""Rows with a usable time stamp (an infinite one has no hour: it is in no range a reader can ask for)."""


# ---- the figures, as SQL over raw rows (shared by the pass and by readers of the rows past the cursor) ----------


def call_sum_exprs(d: Dialect) -> tuple[str, ...]:
    """SQL aggregates for :data:`CALL_SUMS` over raw rows.

    Sums are ``total()`` (SQLite's ``sum()`` raises "integer overflow" past 2**63; ``total()`` answers a float and
    never raises) of :func:`~llm_monitor_mw.store.values.plausible` values: implausible figures are unknown.
    """
    return (
        "count(*)",
        "count(CASE WHEN ok = 0 THEN 1 END)",
        "count(CASE WHEN status_code = 429 THEN 1 END)",
        d.total(plausible("input_tokens")),
        d.total(plausible("output_tokens")),
        d.total(plausible("total_tokens")),
        d.total(plausible("cached_tokens")),
        d.total(plausible("reasoning_tokens")),
        f"count({plausible('total_tokens')})",
        d.total(plausible("cost_usd")),
        f"count({plausible('cost_usd')})",
        d.total(plausible("duration_ms")),
        f"count({plausible('duration_ms')})",
        d.total(plausible("ttft_ms")),
        f"count({plausible('ttft_ms')})",
        f"count(CASE WHEN {plausible('tool_call_count')} > 0 THEN 1 END)",
        f"count(CASE WHEN {UNPRICED} THEN 1 END)",
    )


UNPRICED = (
    f"{plausible('cost_usd')} IS NULL"
    f" AND ({plausible('input_tokens')} IS NOT NULL OR {plausible('output_tokens')} IS NOT NULL)"
)
"""A call with tokens but no cost: the condition behind ``unpriced`` (a price is missing, not a response)."""


def trace_exprs(d: Dialect) -> dict[str, str]:
    """Per column of the trace projection, its aggregate over a trace's raw rows.

    ``calls`` counts first attempts (``attempt`` 1, or unknown): one per logical call, and a sum, so the projection
    can add batches up (a distinct count could not be). ``ended_at`` is the latest ``started_at + duration``.
    """
    attribute = {c: ('"user"' if c == "user" else c) for c in TRACE_ATTRIBUTES}
    attribute["session"] = d.tag_value("tags", "session")
    return {
        "trace_id": "trace_id",
        "started_at": "min(started_at)",
        "ended_at": f"max(started_at + coalesce({plausible('duration_ms')}, 0) / 1000.0)",
        "llm_ms": d.total(plausible("duration_ms")),
        "duration_n": f"count({plausible('duration_ms')})",
        "calls": "count(CASE WHEN attempt IS NULL OR attempt <= 1 THEN 1 END)",
        "attempts": "count(*)",
        "input_tokens": d.total(plausible("input_tokens")),
        "output_tokens": d.total(plausible("output_tokens")),
        "total_tokens": d.total(plausible("total_tokens")),
        "input_n": f"count({plausible('input_tokens')})",
        "output_n": f"count({plausible('output_tokens')})",
        "total_n": f"count({plausible('total_tokens')})",
        "cost_usd": d.total(plausible("cost_usd")),
        "cost_n": f"count({plausible('cost_usd')})",
        "unpriced": f"count(CASE WHEN {UNPRICED} THEN 1 END)",
        "errors": "count(CASE WHEN ok = 0 THEN 1 END)",
        "tool_calls": d.total(plausible("tool_call_count")),
        "tool_n": f"count({plausible('tool_call_count')})",
        **{c: f"min({d.collate_c(e)})" for c, e in attribute.items()},
    }


TRACE_COLUMNS: tuple[str, ...] = ("trace_id", "started_at", "ended_at", *TRACE_SUMS, *TRACE_ATTRIBUTES)
"""The columns of the trace projection (but its ``id``), in :func:`trace_exprs` order."""


def select_traces(d: Dialect, where: str) -> str:
    """``SELECT`` :data:`TRACE_COLUMNS` per trace over the rows matching ``where`` (rows of no trace, or with a
    time stamp no range holds, are left out)."""
    exprs = trace_exprs(d)
    cols = ", ".join(f"{exprs[c]} AS {_q(c)}" for c in TRACE_COLUMNS)
    return f"SELECT {cols} FROM {CALLS} WHERE {where} AND trace_id IS NOT NULL AND {_TIMED} GROUP BY trace_id"


def trace_merge(d: Dialect, old: str, new: str, *, outer: bool = False) -> dict[str, str]:
    """Per column, how two partial rows of one trace (``old`` and ``new``: table aliases) combine. ``outer``:
    ``old`` may be missing (a ``LEFT JOIN``: all its columns NULL)."""
    merged = {
        "started_at": f"coalesce({d.least(f'{old}.started_at', f'{new}.started_at')}, {new}.started_at)",
        "ended_at": f"coalesce({d.greatest(f'{old}.ended_at', f'{new}.ended_at')}, {new}.ended_at)",
        **{c: f"{f'coalesce({old}.{c}, 0)' if outer else f'{old}.{c}'} + {new}.{c}" for c in TRACE_SUMS},
    }
    for c in TRACE_ATTRIBUTES:
        a, b = f"{old}.{_q(c)}", f"{new}.{_q(c)}"
        # SQLite's two-argument min() is NULL when either is; PostgreSQL's least() skips NULLs
        merged[c] = f"coalesce({d.least(d.collate_c(a), d.collate_c(b))}, {a}, {b})"
    return merged


def _q(column: str) -> str:
    return '"user"' if column == "user" else column


def upsert_traces(d: Dialect, where: str) -> str:
    """``INSERT`` the traces of the rows matching ``where`` into the projection, adding into existing rows."""
    columns = ", ".join(_q(c) for c in TRACE_COLUMNS)
    update = ", ".join(f"{_q(c)} = {e}" for c, e in trace_merge(d, TRACES, "excluded").items())
    return (
        f"INSERT INTO {TRACES} ({columns}) SELECT * FROM ({select_traces(d, where)}) AS projected WHERE 1 = 1"
        f" ON CONFLICT (trace_id) DO UPDATE SET {update}"
    )


def backfill_v7(d: Dialect) -> list[str]:
    """Migration 7's statements for the rows already projected: their traces into the trace projection, their
    calls with tokens but no cost into ``rollup_calls_*.unpriced`` (their ``tool_requests`` are 0: no call
    recorded tool calls before)."""
    done = f"{CALLS}.id <= (SELECT coalesce(max(last_id), 0) FROM rollup_state WHERE name = '{CURSOR}')"
    steps = [upsert_traces(d, done)]
    keys = ("ts", "provider", "model")
    for grain, step in (("hour", HOUR), ("day", DAY)):
        table = f"rollup_calls_{grain}"
        zeros = ", ".join("0" for _ in CALL_SUMS[:-1])
        steps.append(
            f"INSERT INTO {table} ({', '.join((*keys, *CALL_SUMS))})"
            f" SELECT * FROM (SELECT u.ts, u.provider, u.model, {zeros}, u.n FROM"
            f" (SELECT {d.bucket(f'{CALLS}.started_at', step)} AS ts, provider, coalesce(model, '') AS model,"
            f" count(*) AS n FROM {CALLS} WHERE {done} AND {_TIMED} AND {UNPRICED} GROUP BY 1, 2, 3) AS u"
            f" WHERE EXISTS (SELECT 1 FROM {table} AS r WHERE r.ts = u.ts AND r.provider = u.provider"
            " AND r.model = u.model)) AS projected WHERE 1 = 1"
            f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET unpriced = excluded.unpriced"
        )
    return steps


BACKFILLS[7] = backfill_v7


def backfill_v8(d: Dialect) -> list[str]:
    """Migration 8's statements for the rows already projected: ``rollup_dims_*.cost_n`` counted from the calls
    still stored; a roll-up row whose calls are gone (pruned) but whose cost sum is not zero counts all of its
    calls as priced (the best the sum tells)."""
    done = f"{CALLS}.id <= (SELECT coalesce(max(last_id), 0) FROM rollup_state WHERE name = '{CURSOR}')"
    keys = ("ts", "dim", "value")
    zeros = ", ".join("0" for _ in DIM_SUMS[:-1])
    steps = []
    for grain, step in (("hour", HOUR), ("day", DAY)):
        table = f"rollup_dims_{grain}"
        counted = " UNION ALL ".join(
            f"SELECT {d.bucket(f'{CALLS}.started_at', step)} AS ts, '{dim}' AS dim, {value} AS value,"
            f" count({plausible('cost_usd')}) AS n {source} WHERE {done} AND {_TIMED} AND {cond} GROUP BY 1, 3"
            for dim, (value, source, cond) in dim_sources(d).items()
        )
        steps.append(
            f"INSERT INTO {table} ({', '.join((*keys, *DIM_SUMS))})"
            f" SELECT * FROM (SELECT u.ts, u.dim, u.value, {zeros}, u.n FROM ({counted}) AS u"
            f" WHERE EXISTS (SELECT 1 FROM {table} AS r WHERE r.ts = u.ts AND r.dim = u.dim AND r.value = u.value))"
            " AS projected WHERE 1 = 1"
            f" ON CONFLICT (dim, ts, value) DO UPDATE SET cost_n = excluded.cost_n"
        )
        steps.append(f"UPDATE {table} SET cost_n = requests WHERE cost_n = 0 AND cost_usd <> 0")
    return steps


BACKFILLS[8] = backfill_v8


def dim_sum_exprs(d: Dialect) -> tuple[str, ...]:
    """SQL aggregates for :data:`DIM_SUMS` over raw rows."""
    return (
        "count(*)",
        "count(CASE WHEN ok = 0 THEN 1 END)",
        d.total(plausible("input_tokens")),
        d.total(plausible("output_tokens")),
        d.total(plausible("total_tokens")),
        d.total(plausible("cost_usd")),
        f"count({plausible('cost_usd')})",
    )


def dim_sources(d: Dialect) -> dict[str, tuple[str, str, str]]:
    """Per dimension: ``(value expression, FROM clause, condition)`` over raw rows.

    Tags a foreign writer stored as anything but a JSON object are no tags (see :meth:`Dialect.tag_entries`).
    Columns of ``calls`` that a tag-entries table also has (SQLite's ``json_each`` has an ``id``) must be qualified.
    """
    return {
        "route": ("route", f"FROM {CALLS}", "route IS NOT NULL"),
        "user": ('"user"', f"FROM {CALLS}", '"user" IS NOT NULL'),
        "status": ("coalesce(CAST(status_code AS TEXT), 'none')", f"FROM {CALLS}", "1 = 1"),
        "error_type": ("coalesce(error_type, '')", f"FROM {CALLS}", "ok = 0"),
        "key": ("key_fingerprint", f"FROM {CALLS}", "key_fingerprint IS NOT NULL"),
        "tag": (
            "j.key || ':' || coalesce(j.value, '')",
            f"FROM {CALLS}, {d.tag_entries(f'{CALLS}.tags', 'j')}",
            f"{CALLS}.tags IS NOT NULL",
        ),
    }


def latency_known(column: str) -> str:
    """A plausible latency (an infinite one would fall in a bucket whose midpoint overflows a float)."""
    return f"{column} > -{PLAUSIBLE} AND {column} < {PLAUSIBLE}"


def hist_bucket(d: Dialect, column: str) -> str:
    """SQL giving the log-histogram bucket of ``column`` (ms): ``floor(log2(max(x, 0.001)) * 8)``."""
    return f"CAST(floor({d.log2(d.greatest(column, '0.001'))} * {HIST_PER_DOUBLING}) AS INTEGER)"


def percentile(hist: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile from a log histogram ``{bucket: count}``: the bucket's geometric midpoint."""
    n = sum(hist.values())
    if not n:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return 2 ** ((b + 0.5) / HIST_PER_DOUBLING)
    return None  # pragma: no cover - unreachable: the ranks add up to n


def bucket_case(column: str) -> str:
    """SQL giving the index in :data:`LATENCY_BUCKETS_S` of ``column`` (ms): the first bound it does not exceed."""
    whens = " ".join(f"WHEN {column} <= {bound * 1000!r} THEN {i}" for i, bound in enumerate(LATENCY_BUCKETS_S))
    return f"CASE {whens} ELSE {len(LATENCY_BUCKETS_S)} END"


def select_calls(d: Dialect, step: int, where: str) -> str:
    """``SELECT ts, provider, model, CALL_SUMS…`` per ``step``-second bucket over the rows matching ``where``."""
    sums = ", ".join(call_sum_exprs(d))
    return (
        f"SELECT {d.bucket(f'{CALLS}.started_at', step)}, provider, coalesce(model, ''), {sums}"
        f" FROM {CALLS} WHERE {where} AND {_TIMED} GROUP BY 1, 2, 3"
    )


def select_latency_models(d: Dialect, step: int, where: str) -> str:
    """``SELECT ts, provider, model, metric, hb, n`` (both metrics) over the rows matching ``where`` (its ``?``
    placeholders appear twice: pass the parameters twice)."""
    return " UNION ALL ".join(
        f"SELECT {d.bucket(f'{CALLS}.started_at', step)}, provider, coalesce(model, ''), '{metric}',"
        f" {hist_bucket(d, column)}, count(*) FROM {CALLS}"
        f" WHERE {where} AND {_TIMED} AND {latency_known(column)} GROUP BY 1, 2, 3, 5"
        for metric, column in HIST_METRICS.items()
    )


def select_latency(d: Dialect, step: int, where: str) -> str:
    """``SELECT ts, metric, hb, n`` (both metrics, every provider/model together) over the rows matching ``where``
    (its placeholders appear twice)."""
    return " UNION ALL ".join(
        f"SELECT {d.bucket(f'{CALLS}.started_at', step)}, '{metric}', {hist_bucket(d, column)}, count(*)"
        f" FROM {CALLS} WHERE {where} AND {_TIMED} AND {latency_known(column)} GROUP BY 1, 3"
        for metric, column in HIST_METRICS.items()
    )


def select_dims(d: Dialect, step: int, where: str) -> str:
    """``SELECT ts, dim, value, DIM_SUMS…`` (every dimension) over the rows matching ``where`` (its placeholders
    appear once per dimension)."""
    sums = ", ".join(dim_sum_exprs(d))
    return " UNION ALL ".join(
        f"SELECT {d.bucket(f'{CALLS}.started_at', step)}, '{dim}', {value}, {sums}"
        f" {source} WHERE {where} AND {_TIMED} AND {cond} GROUP BY 1, 3"
        for dim, (value, source, cond) in dim_sources(d).items()
    )


def select_counter_totals(d: Dialect, where: str) -> str:
    """``SELECT instance, provider, model, status, COUNTER_SUMS…`` over the rows matching ``where``.

    ``status`` is the HTTP status code as text, or ``"error"`` when no response arrived.
    """
    sums = ", ".join(
        (
            "count(*)",
            "count(CASE WHEN ok = 0 THEN 1 END)",
            *(d.total(plausible(c)) for c in TOKEN_COLUMNS),
            d.total(plausible("cost_usd")),
        )
    )
    return (
        f"SELECT coalesce(instance, ''), provider, coalesce(model, ''), coalesce(CAST(status_code AS TEXT), 'error'),"
        f" {sums} FROM {CALLS} WHERE {where} GROUP BY 1, 2, 3, 4"
    )


def select_counter_latency(d: Dialect, where: str) -> str:
    """``SELECT instance, provider, model, metric, bucket, n, sum_ms`` (both metrics) over the rows matching
    ``where`` (its placeholders appear twice)."""
    return " UNION ALL ".join(
        f"SELECT coalesce(instance, ''), provider, coalesce(model, ''), '{metric}', {bucket_case(column)},"
        f" count(*), {d.total(plausible(column))} FROM {CALLS} WHERE {where} AND {column} IS NOT NULL"
        f" GROUP BY 1, 2, 3, 5"
        for metric, column in LATENCY_METRICS.items()
    )


# ---- cursor -------------------------------------------------------------------------------------------------------


def cursor(conn: Connection) -> int:
    """The last ``calls.id`` projected (0 when nothing was), read without a lock (readers: inside a snapshot)."""
    row = conn.execute(f"SELECT last_id FROM rollup_state WHERE name = '{CURSOR}'").fetchone()
    return int(row[0]) if row else 0


def counters_cursor(conn: Connection, dialect: Dialect) -> int:
    """The last ``calls.id`` counted in ``counter_totals``/``counter_latency``: the cursor, or, on a database whose
    counters were kept by an older version with a cursor of their own, that one until the pass has joined them."""
    legacy = _legacy_counters_cursor(conn, dialect)
    return cursor(conn) if legacy is None else legacy


def projected(conn: Connection, dialect: Dialect) -> int:
    """The last ``calls.id`` that every projection (roll-ups and counters) has counted: rows at or below it may be
    deleted (retention) without any projection losing them."""
    legacy = _legacy_counters_cursor(conn, dialect)
    here = cursor(conn)
    return here if legacy is None else min(here, legacy)


def lock_cursor(conn: Connection, dialect: Dialect) -> int:
    """Lock the cursor row for this transaction and return the cursor. Call it first in a write transaction,
    before inserting into ``calls``: on PostgreSQL the row lock orders every writer's inserts (ids grow in
    commit order), which the cursor needs, as it assumes no id at or below it can still appear."""
    lock = " FOR UPDATE" if dialect.name == "postgresql" else ""
    sql = f"SELECT last_id FROM rollup_state WHERE name = '{CURSOR}'{lock}"
    row = conn.execute(sql).fetchone()
    if row is None:
        conn.execute(f"INSERT INTO rollup_state (name, last_id) VALUES ('{CURSOR}', 0) ON CONFLICT (name) DO NOTHING")
        row = conn.execute(sql).fetchone()
    return int(row[0])


def _legacy_counters_cursor(conn: Connection, dialect: Dialect) -> int | None:
    if dialect.name == "postgresql":
        exists = conn.execute("SELECT to_regclass('counters_state') IS NOT NULL").fetchone()[0]
    else:
        exists = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'counters_state'"
        ).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(f"SELECT last_id FROM counters_state WHERE name = '{CURSOR}'").fetchone()
    if row is not None:
        return int(row[0])
    # No counters cursor: either joined already (counters count everything the roll-ups do), or an older version
    # rolled up for the dashboard while /metrics never counted anything. Every counted row leaves a counter_totals
    # row (they are never pruned), so empty counters behind a moved cursor are the second case.
    if cursor(conn) > 0 and conn.execute("SELECT 1 FROM counter_totals LIMIT 1").fetchone() is None:
        return 0
    return None


# ---- the pass -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """Where one projection left the cursor: ``cursor`` (last id projected) and ``top`` (largest id seen)."""

    cursor: int
    top: int
    projected: int = 0
    """Rows projected by this transaction."""
    failed: bool = False

    @property
    def behind(self) -> bool:
        """Whether rows remain past the cursor."""
        return self.cursor < self.top


_SQLITE_MATH: bool | None = None


def sqlite_math(conn: Any) -> None:
    """Register ``log2``/``floor`` on a SQLite connection whose library lacks its math functions (compiled without
    ``SQLITE_ENABLE_MATH_FUNCTIONS``); a no-op elsewhere. A property of the library: checked once per process."""
    global _SQLITE_MATH
    if not isinstance(conn, sqlite3.Connection):
        return
    if _SQLITE_MATH is None:
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute("SELECT log2(2), floor(1.5)").fetchone()
            _SQLITE_MATH = True
        except sqlite3.OperationalError:
            _SQLITE_MATH = False
        finally:
            probe.close()
    if not _SQLITE_MATH:
        conn.create_function("log2", 1, lambda x: math.log2(x) if x and x > 0 else None, deterministic=True)
        conn.create_function("floor", 1, lambda x: None if x is None else math.floor(x), deterministic=True)


class Projector:
    """Runs the pass for one engine (inside the caller's write transaction, or on its own: :func:`catch_up`)."""

    def __init__(self, engine: Engine, *, limit: int | None = None) -> None:
        limit = limit or LIMITS.get(engine.name, LIMIT)
        if limit < 1:
            raise ValueError("limit must be positive")
        self.engine = engine
        self.dialect = engine.dialect
        self.limit = limit
        self.failures = 0
        """Projections rolled back because they failed (the rows they covered stay past the cursor)."""
        self.last_error: str | None = None
        self._legacy = True  # until seen absent: a database may carry an older version's counters cursor
        self._logged = False

    def project(self, conn: Connection, lo: int, *, limit: int | None = None) -> Progress:
        """Project the rows past cursor ``lo`` (at most ``limit``) and move the cursor, in the caller's write
        transaction, where :func:`lock_cursor` returned ``lo``. A failure is rolled back to a savepoint (the
        caller's inserts stay) and reported in the result."""
        d = self.dialect
        sqlite_math(conn)
        top = conn.execute(f"SELECT max(id) FROM {CALLS}").fetchone()[0] or 0
        counted = lo
        if self._legacy:
            legacy = _legacy_counters_cursor(conn, d)
            if legacy is None:
                self._legacy = False
            else:
                counted = legacy
        start = min(lo, counted)
        if top <= start and counted == lo:
            return Progress(start, top)
        row = conn.execute(
            f"SELECT id FROM {CALLS} WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?", (start, (limit or self.limit) - 1)
        ).fetchone()
        hi = max(start, top if row is None else int(row[0]))
        conn.execute("SAVEPOINT llm_monitor_projection")
        try:
            if lo < hi:
                _roll_up(conn, d, lo, hi)
                conn.execute(f"UPDATE rollup_state SET last_id = ? WHERE name = '{CURSOR}'", (hi,))
            if counted < hi:
                _count(conn, d, counted, hi)
            lo, counted = max(lo, hi), max(counted, hi)
            if self._legacy:
                if counted == lo:  # joined: from now on the one cursor covers the counters too
                    conn.execute("DELETE FROM counters_state")
                    self._legacy = False
                else:
                    conn.execute(
                        f"INSERT INTO counters_state (name, last_id) VALUES ('{CURSOR}', ?)"
                        " ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
                        (counted,),
                    )
        except Exception as exc:  # any failure: keep the inserts, leave the cursor, say so once
            conn.execute("ROLLBACK TO SAVEPOINT llm_monitor_projection")
            conn.execute("RELEASE SAVEPOINT llm_monitor_projection")
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self._logged:
                self._logged = True
                logger.exception("llm_monitor_mw: projecting calls (%d, %d] failed; readers use raw rows", start, hi)
            return Progress(start, top, failed=True)
        conn.execute("RELEASE SAVEPOINT llm_monitor_projection")
        return Progress(min(lo, counted), top, hi - start)


def _roll_up(conn: Connection, d: Dialect, lo: int, hi: int) -> None:
    """Add the rows ``(lo, hi]`` into the roll-up tables (hour and day), then recompute the touched quantiles.

    Each table is filled by one scan of the id range (a primary-key range scan) grouped by hour; the day rows are
    those hour groups grouped again (every roll-up column is a sum), so the adding up happens inside the database,
    once per table rather than once per table and grain.
    """
    params = (lo, hi)
    for table, keys, sums, select, n in (
        ("rollup_calls", ("ts", "provider", "model"), CALL_SUMS, select_calls(d, HOUR, _IN_RANGE), 1),
        (
            "rollup_latency_models",
            ("ts", "provider", "model", "metric", "hb"),
            ("n",),
            select_latency_models(d, HOUR, _IN_RANGE),
            len(HIST_METRICS),
        ),
        ("rollup_latency", ("ts", "metric", "hb"), ("n",), select_latency(d, HOUR, _IN_RANGE), len(HIST_METRICS)),
        ("rollup_dims", ("ts", "dim", "value"), DIM_SUMS, select_dims(d, HOUR, _IN_RANGE), len(DIMENSIONS)),
    ):
        _add_hour_and_day(conn, d, table, keys, sums, select, params * n)
    conn.execute(upsert_traces(d, _IN_RANGE), params)
    known = " OR ".join(f"({latency_known(c)})" for c in HIST_METRICS.values())
    touched = sorted(
        int(r[0])
        for r in conn.execute(
            f"SELECT DISTINCT {d.bucket(f'{CALLS}.started_at', HOUR)} FROM {CALLS}"
            f" WHERE {_IN_RANGE} AND {_TIMED} AND ({known})",
            params,
        )
    )
    _requantile(conn, "hour", touched)
    _requantile(conn, "day", sorted({ts - ts % DAY for ts in touched}))


_DAY_OF = f"(ts - ((ts % {DAY}) + {DAY}) % {DAY})"
"""The day holding hour ``ts`` (integer arithmetic, right for negative time stamps too)."""


def _add_hour_and_day(
    conn: Connection,
    d: Dialect,
    base: str,
    keys: Sequence[str],
    sums: Sequence[str],
    select: str,
    params: Sequence[Any],
) -> None:
    """Add the hour groups of ``select`` into ``{base}_hour`` and, grouped by day, into ``{base}_day``.

    PostgreSQL: one statement (the hour groups are a CTE feeding both inserts). SQLite has no data-modifying CTEs:
    the hour groups go through a temporary table of this connection.
    """
    columns = ", ".join((*keys, *sums))
    rest = ", ".join(keys[1:])
    if d.name == "postgresql":
        day = f"SELECT {_DAY_OF}, {rest}, {', '.join(f'sum({c})' for c in sums)} FROM hour GROUP BY 1, {rest}"
        conn.execute(
            f"WITH hour ({columns}) AS MATERIALIZED ({select}),"
            f" h AS ({_upsert(f'{base}_hour', keys, sums, 'SELECT * FROM hour')})"
            f" {_upsert(f'{base}_day', keys, sums, day)}",
            params,
        )
        return
    temp = f"temp.llm_monitor_{base}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS llm_monitor_{base} ({columns})")
    conn.execute(f"DELETE FROM {temp}")
    conn.execute(f"INSERT INTO {temp} ({columns}) {select}", params)
    conn.execute(_upsert(f"{base}_hour", keys, sums, f"SELECT {columns} FROM {temp}"))
    # total(): never raises on overflow; INTEGER columns store an integral float as an integer again
    day = f"SELECT {_DAY_OF}, {rest}, {', '.join(f'total({c})' for c in sums)} FROM {temp} GROUP BY 1, {rest}"
    conn.execute(_upsert(f"{base}_day", keys, sums, day))


def _upsert(table: str, keys: Sequence[str], sums: Sequence[str], select: str) -> str:
    """``INSERT INTO table`` the rows of ``select`` (keys then sums), adding the sums into existing rows."""
    columns = ", ".join((*keys, *sums))
    update = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    # "WHERE 1 = 1": SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT (a parsing ambiguity otherwise)
    return (
        f"INSERT INTO {table} ({columns}) SELECT * FROM ({select}) AS projected WHERE 1 = 1"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {update}"
    )


def _add(
    conn: Connection, table: str, keys: Sequence[str], sums: Sequence[str], select: str, params: Sequence[Any]
) -> None:
    """``INSERT INTO table`` the rows of ``select`` (keys then sums), adding the sums into existing rows."""
    conn.execute(_upsert(table, keys, sums, select), params)


def _requantile(conn: Connection, grain: str, touched: list[int]) -> None:
    """Recompute ``rollup_quantiles_{grain}`` for the buckets in ``touched`` from their histograms."""
    for start in range(0, len(touched), 500):
        chunk = touched[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        hists: dict[tuple[int, str], dict[int, int]] = {}
        for ts, metric, hb, n in conn.execute(
            f"SELECT ts, metric, hb, n FROM rollup_latency_{grain} WHERE ts IN ({marks})", chunk
        ):
            hists.setdefault((ts, metric), {})[hb] = n
        conn.executemany(
            f"INSERT INTO rollup_quantiles_{grain} (ts, metric, p50, p95) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (ts, metric) DO UPDATE SET p50 = excluded.p50, p95 = excluded.p95",
            [(ts, metric, percentile(h, 0.5), percentile(h, 0.95)) for (ts, metric), h in hists.items()],
        )


def _count(conn: Connection, d: Dialect, lo: int, hi: int) -> None:
    """Add the rows ``(lo, hi]`` into ``counter_totals`` and ``counter_latency``."""
    params = (lo, hi)
    _add(
        conn,
        "counter_totals",
        ("instance", "provider", "model", "status"),
        COUNTER_SUMS,
        select_counter_totals(d, _IN_RANGE),
        params,
    )
    _add(
        conn,
        "counter_latency",
        ("instance", "provider", "model", "metric", "bucket"),
        ("n", "sum_ms"),
        select_counter_latency(d, _IN_RANGE),
        params * len(LATENCY_METRICS),
    )


# ---- on its own: catching up ------------------------------------------------------------------------------------


def behind(engine: Engine) -> bool:
    """Whether rows exist past the cursor (two indexed reads; never writes)."""
    conn = engine.connection()
    top = conn.execute(f"SELECT max(id) FROM {CALLS}").fetchone()[0] or 0
    return cursor(conn) < top or (
        top > 0 and (legacy := _legacy_counters_cursor(conn, engine.dialect)) is not None and legacy < top
    )


def step(engine: Engine, projector: Projector | None = None, *, deadline: float | None = None) -> Progress:
    """One catch-up transaction: lock the cursor, project at most ``projector.limit`` rows past it, commit."""
    proj = projector or Projector(engine)

    def fn(conn: Connection) -> Progress:
        return proj.project(conn, lock_cursor(conn, proj.dialect))

    return engine.write(fn, deadline=deadline)


def catch_up(engine: Engine, *, limit: int | None = None, deadline: float | None = None) -> Progress:
    """Project every row past the cursor, in transactions of at most ``limit`` rows (default: :data:`LIMITS`),
    other writers getting the lock between them. Returns where the cursor ended (``behind`` when a projection
    failed or ``deadline`` passed).

    For maintenance that needs every row projected first (retention, before it deletes rows) and for tools that
    insert rows themselves. The writer does this on its own when idle.
    """
    proj = Projector(engine, limit=limit)
    progress = Progress(0, 0)
    first, held = True, 0.0
    while first or progress.behind:
        if not first:
            # as long a pause as the step held the lock: other writers (the app's) get at least half of it
            time.sleep(min(held, 1.0))
        first = False
        started = time.monotonic()
        progress = step(engine, proj, deadline=deadline)
        held = time.monotonic() - started
        if progress.failed or (deadline is not None and time.monotonic() >= deadline):
            break
    return progress
