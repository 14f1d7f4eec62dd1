"""Re-pricing stored calls: new costs after a price update or new overrides, the projections kept in step.

Calls are taken in batches by id, each batch one short write transaction that

1. locks the projection cursor (:func:`.projections.lock_cursor`: no projection runs meanwhile, here or elsewhere),
2. reads the batch's rows and prices them with the given function (the caller's :class:`~llm_monitor_mw.pricing.
   Pricer`),
3. reads the cost figures of every projection row the batch's already-projected calls fall in, with the very
   ``SELECT``s the projection pass uses (:func:`.projections.select_calls`, ``select_dims``, ``select_traces``,
   ``select_counter_totals``: the same bucket keys, the same ``plausible`` filter),
4. updates the calls' ``cost_usd``, reads those figures again, and adds the difference into each projection row.

So every roll-up (``rollup_calls_*``: ``cost_usd``, ``cost_n``, ``unpriced``; ``rollup_dims_*``: ``cost_usd``,
``cost_n``), the trace projection (``trace_totals``) and the ``/metrics`` counters (``counter_totals.cost_usd``)
equal what a rebuild from the raw rows would give. Budgets read their spend from those roll-ups, so they agree too.
Calls past the cursor are not projected yet: the pass counts them at their new cost later.

A call the new prices do not know keeps its stored cost (a price once known is better than none); a call whose
pricing raises keeps its cost and is counted in :attr:`RepriceResult.failed`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..record import CallRecord
from .engine.base import Connection, Dialect, Engine
from .projections import (
    CALL_SUMS,
    COUNTER_SUMS,
    DAY,
    DIM_SUMS,
    DIMENSIONS,
    HOUR,
    TRACE_COLUMNS,
    counters_cursor,
    lock_cursor,
    select_calls,
    select_counter_totals,
    select_dims,
    select_traces,
    sqlite_math,
)
from .schema import CALLS, TRACES

logger = logging.getLogger("llm_monitor_mw")

BATCH = 500
"""Calls per transaction."""
_RANGE = f"{CALLS}.id > ? AND {CALLS}.id <= ?"
_FIELDS = (
    "id",
    "started_at",
    "provider",
    "operation",
    "endpoint",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "service_tier",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
)
_INTS = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_creation_tokens",
        "reasoning_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
    }
)


@dataclass(frozen=True, slots=True)
class _Projection:
    """One projection table's cost columns, and where they are in the ``SELECT`` that defines its rows."""

    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    positions: tuple[int, ...]
    """Index of each of ``columns`` in a row of the defining ``SELECT``."""
    nkeys: int


def _projection(table: str, keys: Sequence[str], sums: Sequence[str], columns: Sequence[str]) -> _Projection:
    return _Projection(table, tuple(keys), tuple(columns), tuple(len(keys) + sums.index(c) for c in columns), len(keys))


_CALLS = _projection("rollup_calls", ("ts", "provider", "model"), CALL_SUMS, ("cost_usd", "cost_n", "unpriced"))
_DIMS = _projection("rollup_dims", ("ts", "dim", "value"), DIM_SUMS, ("cost_usd", "cost_n"))
_TRACES = _projection(TRACES, ("trace_id",), TRACE_COLUMNS[1:], ("cost_usd", "cost_n", "unpriced"))
_COUNTERS = _projection("counter_totals", ("instance", "provider", "model", "status"), COUNTER_SUMS, ("cost_usd",))


@dataclass(slots=True)
class RepriceResult:
    """What a run did: calls looked at, costs changed, calls left as they were (no price now, or pricing failed)."""

    scanned: int = 0
    changed: int = 0
    unpriced: int = 0
    """Calls the new prices do not know (their stored cost is kept)."""
    failed: int = 0
    """Calls whose pricing raised (their stored cost is kept)."""
    delta_usd: float = 0.0
    """New total cost minus old over the calls changed."""
    batches: int = 0


def reprice(
    engine: Engine,
    price: Callable[[CallRecord], float | None],
    *,
    since: float | None = None,
    batch: int = BATCH,
    progress: Callable[[RepriceResult], None] | None = None,
) -> RepriceResult:
    """Recompute ``cost_usd`` of the calls started at or after ``since`` (all when ``None``) with ``price``, in
    transactions of at most ``batch`` calls, each updating the projections by the difference it made."""
    if batch < 1:
        raise ValueError("batch must be positive")
    result = RepriceResult()
    last = 0
    while True:
        started = time.monotonic()
        last, done, part = engine.write(lambda conn, lo=last: _batch(conn, engine.dialect, price, lo, since, batch))
        result.scanned += part.scanned
        result.changed += part.changed
        result.unpriced += part.unpriced
        result.failed += part.failed
        result.delta_usd += part.delta_usd
        result.batches += 1
        if progress is not None:
            progress(result)
        if done:
            return result
        time.sleep(min(time.monotonic() - started, 0.5))  # other writers (the app's) get the lock between batches


def _batch(
    conn: Connection,
    d: Dialect,
    price: Callable[[CallRecord], float | None],
    lo: int,
    since: float | None,
    size: int,
) -> tuple[int, bool, RepriceResult]:
    """One transaction: the next ``size`` calls after id ``lo``. Returns the last id seen, whether it was the
    last batch, and what it did (counted by the caller once it committed: the engine may retry this function)."""
    sqlite_math(conn)
    projected = lock_cursor(conn, d)
    counted = counters_cursor(conn, d)
    where, params = f"id > ?{' AND started_at >= ?' if since is not None else ''}", [lo]
    if since is not None:
        params.append(since)
    rows = conn.execute(
        f"SELECT {', '.join(_FIELDS)} FROM {CALLS} WHERE {where} ORDER BY id LIMIT {int(size)}", params
    ).fetchall()
    part = RepriceResult()
    if not rows:
        return lo, True, part
    updates: list[tuple[float, int]] = []
    for row in rows:
        part.scanned += 1
        fields = dict(zip(_FIELDS, row, strict=True))
        try:
            new = price(_record(fields))
        except Exception:
            part.failed += 1
            logger.exception("llm_monitor_mw: re-pricing call %s failed; its cost is kept", fields["id"])
            continue
        if new is None or not math.isfinite(new):
            part.unpriced += 1
            continue
        old = fields["cost_usd"]
        if old is not None and float(old) == new:
            continue
        updates.append((new, int(fields["id"])))
        part.changed += 1
        part.delta_usd += new - (float(old) if old is not None and math.isfinite(float(old)) else 0.0)
    first, top = int(rows[0][0]), int(rows[-1][0])
    if updates:
        _apply(conn, d, updates, (first - 1, min(top, projected)), (first - 1, min(top, counted)))
    return top, len(rows) < size, part


def _apply(
    conn: Connection,
    d: Dialect,
    updates: list[tuple[float, int]],
    rolled: tuple[int, int],
    counted: tuple[int, int],
) -> None:
    """Update the calls' costs and add the change into every projection row their projected calls fall in."""
    reads = [
        (_CALLS, select_calls(d, HOUR, _RANGE), rolled, 1, True),
        (_DIMS, select_dims(d, HOUR, _RANGE), rolled, len(DIMENSIONS), True),
        (_TRACES, select_traces(d, _RANGE), rolled, 1, False),
        (_COUNTERS, select_counter_totals(d, _RANGE), counted, 1, False),
    ]
    before = [_figures(conn, p, sql, span, n) if span[0] < span[1] else {} for p, sql, span, n, _ in reads]
    conn.executemany(f"UPDATE {CALLS} SET cost_usd = ? WHERE id = ?", updates)
    for (projection, sql, span, n, by_day), old in zip(reads, before, strict=True):
        if span[0] >= span[1]:
            continue
        changes = _differences(old, _figures(conn, projection, sql, span, n))
        if by_day:
            _add(conn, projection, f"{projection.table}_hour", changes.items())
            _add(conn, projection, f"{projection.table}_day", _by_day(changes).items())
        else:
            _add(conn, projection, projection.table, changes.items())


def _figures(
    conn: Connection, projection: _Projection, sql: str, span: tuple[int, int], parts: int
) -> dict[tuple[Any, ...], tuple[float, ...]]:
    """The cost columns per projection key over the calls in ``span``."""
    rows = conn.execute(sql, span * parts).fetchall()
    return {tuple(row[: projection.nkeys]): tuple(float(row[i] or 0) for i in projection.positions) for row in rows}


def _differences(
    old: dict[tuple[Any, ...], tuple[float, ...]], new: dict[tuple[Any, ...], tuple[float, ...]]
) -> dict[tuple[Any, ...], tuple[float, ...]]:
    changes = {}
    for key in old.keys() | new.keys():
        a, b = old.get(key), new.get(key)
        width = len(a or b or ())
        diff = tuple((b[i] if b else 0.0) - (a[i] if a else 0.0) for i in range(width))
        if any(diff):
            changes[key] = diff
    return changes


def _by_day(changes: dict[tuple[Any, ...], tuple[float, ...]]) -> dict[tuple[Any, ...], tuple[float, ...]]:
    """Hour-bucket changes summed into day buckets (the day of hour ``ts``, as the projection pass computes it)."""
    days: dict[tuple[Any, ...], list[float]] = {}
    for (ts, *rest), diff in changes.items():
        key = (int(ts) - int(ts) % DAY, *rest)
        total = days.setdefault(key, [0.0] * len(diff))
        for i, v in enumerate(diff):
            total[i] += v
    return {k: tuple(v) for k, v in days.items()}


def _add(conn: Connection, projection: _Projection, table: str, changes: Iterable[tuple[tuple[Any, ...], Any]]) -> None:
    counts = {c for c in projection.columns if c != "cost_usd"}
    sets = ", ".join(f"{c} = {c} + ?" for c in projection.columns)
    match = " AND ".join(f"{_q(k)} = ?" for k in projection.keys)
    conn.executemany(
        f"UPDATE {table} SET {sets} WHERE {match}",
        [
            (*(round(v) if c in counts else v for c, v in zip(projection.columns, diff, strict=True)), *key)
            for key, diff in changes
        ],
    )


def _q(column: str) -> str:
    return '"user"' if column == "user" else column


def _record(fields: dict[str, Any]) -> CallRecord:
    """The fields of a stored call that pricing reads, as a record (an unusable number is unknown)."""
    record = CallRecord(
        started_at=_number(fields["started_at"]) or 0.0,
        provider=str(fields["provider"] or ""),
        operation=str(fields["operation"] or ""),
        endpoint=str(fields["endpoint"] or ""),
        request_model=fields["request_model"],
        response_model=fields["response_model"],
        service_tier=fields["service_tier"],
    )
    for name in _INTS:
        value = _number(fields[name])
        setattr(record, name, int(value) if value is not None and value >= 0 else None)
    return record


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and abs(number) < 2**53 else None


__all__ = ["BATCH", "HOUR", "RepriceResult", "reprice"]
