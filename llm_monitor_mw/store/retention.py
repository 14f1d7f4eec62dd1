"""Retention: deleting calls (and the dashboard's roll-up rows) older than a cutoff, in short transactions.

Retention never counts anything: the writer keeps the roll-ups and the ``/metrics`` counters up to date in the
same pass as its inserts (:mod:`.projections`), and ``rollup_state`` row ``'calls'`` holds the last ``calls.id``
it has projected (:func:`.projections.projected`). Only calls at or below that cursor are deleted, so a roll-up
or counter never loses a call it has not counted yet; older calls above it (a backlog the writer is still
catching up on) are left for a later run and reported as :attr:`PruneResult.kept`.

What goes is decided once, before anything is deleted, by :func:`plan`; a dry run reports the same plan's
counts, so ``--dry-run`` says exactly what the real run deletes when nothing else changes in between.

- ``calls``: rows with ``id <= min(cursor, max(id) - 1)`` and ``started_at < before``, deleted by id range. The
  newest row always stays: SQLite hands out ``max(id) + 1`` next, so an emptied table would reuse ids the cursor
  has passed, and those calls would never be projected.
- Roll-up tables (``rollup_*_hour`` / ``rollup_*_day``, with a ``ts`` bucket start): the buckets that end at or
  before ``before``; a bucket straddling it is kept whole. Keys are read outside the write lock, deleted by key.
- The trace projection (``trace_totals``): the traces that started before ``before`` (as a range reads them:
  the list of a range never shows one whose first calls are gone). ``Traces.get`` reads a trace from its
  calls, so one straddling the cutoff shows the calls kept.

Each batch is its own short write transaction (:meth:`Engine.write`), followed by a pause at least as long as the
batch held the lock; the batch size adapts to keep transactions near :data:`TARGET_LOCK_S`. On SQLite that is
what a concurrent writer waits at worst (plus its busy handler's sleep granularity); on PostgreSQL deletes take
row locks only, which the writer's inserts never wait for.

One pruner at a time per database: on PostgreSQL a session advisory lock (``pg_try_advisory_lock``), on SQLite a
lease row in ``rollup_state`` taken and renewed inside the pruner's own write transactions. A second pruner does
not wait: it returns at once with :attr:`PruneResult.skipped` set.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine.base import Connection, Engine
from .projections import projected
from .schema import TRACES

logger = logging.getLogger("llm_monitor_mw")

CALLS = "calls"
TARGET_LOCK_S = 0.05
"""Aim for write transactions about this long (the batch size adapts to the machine)."""
MIN_PAUSE_S = 0.01
GRAINS = {"hour": 3600, "day": 86400}
"""Roll-up table suffix -> bucket length in seconds (``ts`` is the bucket's start)."""
ADVISORY_KEY = zlib.crc32(b"llm_monitor_mw.retention")
"""PostgreSQL advisory lock key held by the one running pruner of a database."""
LEASE = "retention_lease"
"""SQLite: the ``rollup_state`` row whose ``last_id`` is the running pruner's lease expiry (Unix milliseconds)."""
KEYS_PER_DELETE = 500
LEASE_S = 60.0
"""A lease not renewed for this long (a pruner that crashed) is free again."""


class PruneBusy(Exception):
    """Another pruner holds this database's retention lock."""


@dataclass(slots=True)
class PruneResult:
    """What one :func:`prune` did (or, with ``dry_run``, would do)."""

    before: float
    calls: int = 0
    rollup_rows: int = 0
    kept: int = 0
    """Calls older than ``before`` left in place because the writer has not projected them yet."""
    transactions: int = 0
    longest_lock_s: float = 0.0
    """The longest of this prune's own write transactions, from holding the lock to ``COMMIT`` returning."""
    seconds: float = 0.0
    dry_run: bool = False
    stopped: bool = False
    """``True`` when ``stop`` was set before everything was pruned."""
    skipped: bool = False
    """``True`` when another pruner was running on the same database, so this one did nothing."""


@dataclass(slots=True)
class Plan:
    """What a prune deletes, decided before the first delete."""

    before: float
    last_id: int
    """Calls with ``id <= last_id`` (and ``started_at < before``) go."""
    tables: list[tuple[str, int]] = field(default_factory=list)
    """``(roll-up table, bucket seconds)``; rows with ``ts <= before - seconds`` go."""
    traces: bool = False
    """Whether the trace projection exists (migration 7); its traces that started before ``before`` go."""


def rollup_tables(engine: Engine, conn: Connection | None = None) -> list[tuple[str, int]]:
    """``(table, bucket seconds)`` of every roll-up table present (``rollup_<name>_hour|day`` with a ``ts``)."""
    conn = conn or engine.connection()
    if engine.name == "postgresql":
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND column_name = 'ts' AND table_name LIKE ? ORDER BY table_name",
                ("rollup\\_%",),
            )
        ]
    else:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'rollup\\_%' ESCAPE '\\'"
                " ORDER BY name"
            )
            if any(col[1] == "ts" for col in conn.execute(f'PRAGMA table_info("{r[0]}")'))
        ]
    return [(name, GRAINS[suffix]) for name in names if (suffix := name.rsplit("_", 1)[-1]) in GRAINS]


def _key_columns(engine: Engine, conn: Connection, table: str) -> list[str]:
    """The primary-key columns of ``table`` in key order."""
    if engine.name == "postgresql":
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary"
            " ORDER BY array_position(CAST(i.indkey AS SMALLINT[]), a.attnum)",
            (table,),
        ).fetchall()
        keys = [r[0] for r in rows]
    else:
        keys = [name for _, name in sorted((c[5], c[1]) for c in conn.execute(f'PRAGMA table_info("{table}")') if c[5])]
    if not keys:
        raise RuntimeError(f"roll-up table {table} has no primary key")
    return keys


def plan(engine: Engine, before: float) -> Plan:
    """What :func:`prune` deletes for ``before``: read-only, on this thread's connection."""
    conn = engine.connection()
    newest = conn.execute(f"SELECT max(id) FROM {CALLS}").fetchone()[0]
    last_id = 0 if newest is None else min(projected(conn, engine.dialect), int(newest) - 1)
    return Plan(before=before, last_id=last_id, tables=rollup_tables(engine, conn), traces=has_traces(engine, conn))


def has_traces(engine: Engine, conn: Connection | None = None) -> bool:
    """Whether the trace projection table exists (a database migrated to version 7)."""
    conn = conn or engine.connection()
    if engine.name == "postgresql":
        return bool(conn.execute("SELECT to_regclass(?) IS NOT NULL", (TRACES,)).fetchone()[0])
    sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
    return bool(conn.execute(sql, (TRACES,)).fetchone()[0])


def count(engine: Engine, p: Plan) -> PruneResult:
    """The rows ``p`` deletes (and the old calls it keeps), counted without deleting anything."""
    conn = engine.connection()
    result = PruneResult(before=p.before, dry_run=True)
    result.calls, result.kept = conn.execute(
        f"SELECT count(CASE WHEN id <= ? THEN 1 END), count(CASE WHEN id > ? THEN 1 END) FROM {CALLS}"
        " WHERE started_at < ?",
        (p.last_id, p.last_id, p.before),
    ).fetchone()
    for table, grain in p.tables:
        result.rollup_rows += conn.execute(
            f'SELECT count(*) FROM "{table}" WHERE ts <= ?', (p.before - grain,)
        ).fetchone()[0]
    if p.traces:
        result.rollup_rows += conn.execute(
            f"SELECT count(*) FROM {TRACES} WHERE started_at < ?", (p.before,)
        ).fetchone()[0]
    return result


class _Exclusive:
    """The database's one-pruner lock: a PostgreSQL advisory lock, or a SQLite lease row renewed per batch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.token = 0

    def acquire(self) -> bool:
        if self.engine.name == "postgresql":
            row = (
                self.engine.connection()
                .execute("SELECT pg_try_advisory_lock(CAST(? AS BIGINT))", (ADVISORY_KEY,))
                .fetchone()
            )
            return bool(row[0])
        try:
            self.engine.write(self._take)
        except PruneBusy:
            return False
        return True

    def _take(self, conn: Connection) -> None:
        now = int(time.time() * 1000)
        row = conn.execute("SELECT last_id FROM rollup_state WHERE name = ?", (LEASE,)).fetchone()
        if row is not None and row[0] > now:
            raise PruneBusy
        self.token = now + int(LEASE_S * 1000) + random.randrange(1000)
        conn.execute(
            "INSERT INTO rollup_state (name, last_id) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET last_id = ?",
            (LEASE, self.token, self.token),
        )

    def renew(self, conn: Connection) -> None:
        """Inside a write transaction (SQLite): extend the lease, or raise :class:`PruneBusy` if it was lost."""
        if self.engine.name == "postgresql":
            return
        token = max(self.token + 1, int(time.time() * 1000) + int(LEASE_S * 1000))
        cur = conn.execute(
            "UPDATE rollup_state SET last_id = ? WHERE name = ? AND last_id = ?", (token, LEASE, self.token)
        )
        if cur.rowcount != 1:
            raise PruneBusy
        self.token = token

    def release(self) -> None:
        try:
            if self.engine.name == "postgresql":
                self.engine.connection().execute(
                    "SELECT pg_advisory_unlock(CAST(? AS BIGINT))", (ADVISORY_KEY,)
                ).fetchone()
            else:
                self.engine.write(
                    lambda c: c.execute("DELETE FROM rollup_state WHERE name = ? AND last_id = ?", (LEASE, self.token))
                )
        except self.engine.errors:
            logger.warning("llm_monitor_mw: could not release the retention lock (it expires)", exc_info=True)


class _Batches:
    """Runs the prune's write transactions: measures them, adapts the batch size, pauses, renews the lock.

    On SQLite the connection's automatic WAL checkpoint is off meanwhile (it would run inside COMMIT, holding the
    lock longer); each pause starts with a passive checkpoint instead, which does not block writers.
    """

    def __init__(
        self, engine: Engine, result: PruneResult, lock: _Exclusive, batch_size: int, stop: threading.Event | None
    ) -> None:
        self.engine = engine
        self.result = result
        self.lock = lock
        self.initial = self.size = batch_size
        self.max_size = batch_size * 10
        self.stop = stop
        self.lost = False
        self._sqlite = engine.name == "sqlite"
        if self._sqlite:
            conn = engine.connection()
            self._autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            conn.execute("PRAGMA wal_autocheckpoint = 0")

    def close(self) -> None:
        if self._sqlite:
            self.engine.connection().execute(f"PRAGMA wal_autocheckpoint = {int(self._autocheckpoint)}")

    def reset(self) -> None:
        """Start a new table from the initial batch size (row costs differ between tables)."""
        self.size = self.initial

    def write(self, fn: Callable[[Connection], int]) -> int:
        held: list[float] = []

        def timed(conn: Connection) -> int:
            held.append(time.perf_counter())  # the lock is ours from here until COMMIT returns
            self.lock.renew(conn)
            return fn(conn)

        try:
            value = self.engine.write(timed)
        except PruneBusy:
            self.lost = True
            logger.warning("llm_monitor_mw: retention lost its lease to another pruner; stopping")
            return 0
        elapsed = time.perf_counter() - held[-1]
        self.result.transactions += 1
        self.result.longest_lock_s = max(self.result.longest_lock_s, elapsed)
        scale = TARGET_LOCK_S / max(elapsed, 1e-4)
        self.size = max(100, min(self.max_size, int(self.size * min(1.5, max(0.25, scale)))))
        pause_until = time.perf_counter() + max(MIN_PAUSE_S, elapsed)
        if self._sqlite:
            self.engine.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.pause(pause_until - time.perf_counter())
        return value

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.stop is None:
            time.sleep(seconds)
        else:
            self.stop.wait(seconds)

    @property
    def stopped(self) -> bool:
        return self.lost or (self.stop is not None and self.stop.is_set())


def prune(
    engine: Engine,
    before: float,
    *,
    batch_size: int = 2000,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> PruneResult:
    """Delete projected calls that started before ``before`` (Unix seconds) and roll-up buckets that ended by then.

    ``stop`` (an event) ends the work between two batches. With ``dry_run`` nothing is deleted and the result
    counts what would be. When another pruner runs on the same database, returns at once with ``skipped`` set.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    started = time.perf_counter()
    if dry_run:
        result = count(engine, plan(engine, before))
        result.seconds = time.perf_counter() - started
        return result
    lock = _Exclusive(engine)
    if not lock.acquire():
        return PruneResult(before=before, skipped=True, seconds=time.perf_counter() - started)
    try:
        p = plan(engine, before)
        result = PruneResult(before=before)
        conn = engine.connection()
        result.kept = conn.execute(
            f"SELECT count(*) FROM {CALLS} WHERE started_at < ? AND id > ?", (before, p.last_id)
        ).fetchone()[0]
        batches = _Batches(engine, result, lock, batch_size, stop)
        try:
            _prune_calls(conn, batches, p)
            for table, grain in p.tables:
                if batches.stopped:
                    break
                batches.reset()
                _prune_rollup(engine, conn, batches, table, before - grain)
            if p.traces and not batches.stopped:
                batches.reset()
                _prune_traces(conn, batches, before)
            result.stopped = batches.stopped
        finally:
            batches.close()
    finally:
        lock.release()
    result.seconds = time.perf_counter() - started
    return result


def _prune_calls(conn: Connection, batches: _Batches, p: Plan) -> None:
    lo = conn.execute(
        f"SELECT min(id) FROM {CALLS} WHERE started_at < ? AND id <= ?", (p.before, p.last_id)
    ).fetchone()[0]
    if lo is None:
        return
    hi = p.last_id
    delete = f"DELETE FROM {CALLS} WHERE id >= ? AND id < ? AND started_at < ?"
    while lo <= hi and not batches.stopped:
        # The batch ends after `size` existing rows, however sparse the ids are after earlier prunes.
        row = conn.execute(f"SELECT id FROM {CALLS} WHERE id >= ? ORDER BY id LIMIT 1 OFFSET ?", (lo, batches.size))
        end = min(hi + 1, (row.fetchone() or (hi + 1,))[0])
        batches.result.calls += batches.write(lambda c, lo=lo, end=end: c.execute(delete, (lo, end, p.before)).rowcount)
        lo = end


def _prune_rollup(engine: Engine, conn: Connection, batches: _Batches, table: str, last_ts: float) -> None:
    """Delete rows with ``ts <= last_ts``: keys are read outside the lock, deleted by key inside it."""
    keys = _key_columns(engine, conn, table)
    columns = ", ".join(keys)
    select = f'SELECT {columns} FROM "{table}" WHERE ts <= ? LIMIT ?'
    row = f"({', '.join('?' for _ in keys)})"

    def remove(c: Connection, rows: list[Any]) -> int:
        removed = 0
        # Row values, a few hundred keys per statement (SQLite allows 32,766 parameters): one round trip each.
        for start in range(0, len(rows), KEYS_PER_DELETE):
            chunk = rows[start : start + KEYS_PER_DELETE]
            sql = f'DELETE FROM "{table}" WHERE ({columns}) IN (VALUES {", ".join(row for _ in chunk)})'
            removed += c.execute(sql, [v for key in chunk for v in key]).rowcount
        return removed

    while not batches.stopped:
        rows = [tuple(r) for r in conn.execute(select, (last_ts, batches.size)).fetchall()]
        if not rows:
            return
        batches.result.rollup_rows += batches.write(lambda c, rows=rows: remove(c, rows))


def _prune_traces(conn: Connection, batches: _Batches, before: float) -> None:
    """Delete the traces that started before ``before``: ids read outside the lock (by the start-time index),
    deleted by id inside it."""
    select = f"SELECT id FROM {TRACES} WHERE started_at < ? LIMIT ?"

    def remove(c: Connection, ids: list[int]) -> int:
        removed = 0
        for start in range(0, len(ids), KEYS_PER_DELETE):
            chunk = ids[start : start + KEYS_PER_DELETE]
            marks = ", ".join("?" for _ in chunk)
            removed += c.execute(f"DELETE FROM {TRACES} WHERE id IN ({marks})", chunk).rowcount
        return removed

    while not batches.stopped:
        ids = [r[0] for r in conn.execute(select, (before, batches.size)).fetchall()]
        if not ids:
            return
        batches.result.rollup_rows += batches.write(lambda c, ids=ids: remove(c, ids))


def vacuum(engine: Engine) -> None:
    """Give freed space back. SQLite: rewrite the file (blocks writers while it runs), then truncate the WAL.
    PostgreSQL: plain ``VACUUM`` of the pruned tables (marks space reusable; never blocks writers)."""
    conn = engine.connection()
    if engine.name == "postgresql":
        traces = (TRACES,) if has_traces(engine, conn) else ()
        for table in (CALLS, *(t for t, _ in rollup_tables(engine, conn)), *traces):
            conn.execute(f'VACUUM "{table}"')
        return
    conn.execute("VACUUM")  # the connection's busy timeout waits for a writer that holds the lock
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class Retention:
    """Prunes calls older than ``days`` on a daemon thread: shortly after :meth:`start`, then every ``interval``.

    Several processes (or hosts, on PostgreSQL) sharing one database may each run one: only one prunes at a time
    (the others skip that run), a run with nothing to do costs a few indexed lookups, and the intervals are
    jittered so they do not line up.
    """

    first_delay: float = 10.0
    """Seconds from :meth:`start` to the first run."""
    interval: float = 3600.0
    """Seconds between runs (±10 % jitter)."""

    def __init__(self, engine: Engine, days: float) -> None:
        if not days > 0:
            raise ValueError("retention days must be positive")
        self.engine = engine
        self.days = days
        self.runs = 0
        self.failures = 0
        self.skips = 0
        """Runs that found another pruner at work on the same database."""
        self.last_result: PruneResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def cutoff(self) -> float:
        """Calls that started before this time (Unix seconds) are due for deletion."""
        return time.time() - self.days * 86400

    def run_once(self) -> PruneResult | None:
        """Prune now, on the calling thread (``None`` when nothing is old enough)."""
        cutoff = self.cutoff
        due = count(self.engine, plan(self.engine, cutoff))
        self.runs += 1
        if not (due.calls or due.rollup_rows):
            self.last_result = None
            return None
        result = self.last_result = prune(self.engine, cutoff, stop=self._stop)
        if result.skipped:
            self.skips += 1
            logger.info("llm_monitor_mw: retention skipped: another instance is pruning %s", self.engine.location)
        elif result.calls or result.rollup_rows:
            logger.info(
                "llm_monitor_mw: retention pruned %d calls and %d roll-up rows older than %.4g days in %.1f s",
                result.calls,
                result.rollup_rows,
                self.days,
                result.seconds,
            )
        return result

    def start(self) -> None:
        """Start the background thread (no-op if it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="llm-monitor-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread, interrupting a run between two batches."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        delay = self.first_delay
        try:
            while not self._stop.wait(delay):
                try:
                    self.run_once()
                except Exception:
                    self.failures += 1
                    logger.exception("llm_monitor_mw: retention run failed on %s", self.engine.location)
                delay = self.interval * random.uniform(0.9, 1.1)
        finally:
            self.engine.close()
