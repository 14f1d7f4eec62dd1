"""Retention: deleting calls (and the dashboard's roll-up rows) older than a cutoff, without long write locks.

Rows go in small batches, each its own short ``BEGIN IMMEDIATE`` transaction (through :meth:`Database.write`,
which retries while another process holds the lock), with a pause after each batch at least as long as the
batch held the lock, so the background writer of a running app waits milliseconds, not seconds. The batch size
adapts to keep each transaction near :data:`TARGET_LOCK_S`.

``calls`` is pruned by row id ranges (ids grow with time; the ``started_at`` condition keeps any younger row that
sits among old ids). Roll-up tables (``rollup_*_hour`` / ``rollup_*_day``) lose the buckets that end at or before
the cutoff; a bucket that straddles it is kept whole. Other tables are never touched.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from .analytics import Rollups
from .counters import Counters
from .database import Database
from .schema import CALLS

logger = logging.getLogger("llm_monitor_mw")

TARGET_LOCK_S = 0.05
"""Aim for write transactions about this long (the batch size adapts to the machine)."""
MIN_PAUSE_S = 0.01
GRAINS = {"hour": 3600, "day": 86400}
"""Roll-up table suffix -> bucket length in seconds (``ts`` is the bucket's start)."""


@dataclass(slots=True)
class PruneResult:
    """What one :func:`prune` did (or, with ``dry_run``, would do)."""

    before: float
    calls: int = 0
    rollup_rows: int = 0
    transactions: int = 0
    longest_lock_s: float = 0.0
    seconds: float = 0.0
    dry_run: bool = False
    stopped: bool = False
    """``True`` when ``stop`` was set before everything was pruned."""


class _Batches:
    """Runs write transactions, measures how long each held the lock, adapts the batch size and pauses.

    The connection's automatic WAL checkpoint is off meanwhile (it would run inside COMMIT and be counted as lock
    time); instead each pause starts with a passive checkpoint, which does not block writers, so the WAL stays
    small and the app's writer does not have to copy the prune's pages back into the database on its commits.
    """

    def __init__(self, db: Database, result: PruneResult, batch_size: int, stop: threading.Event | None) -> None:
        self.db = db
        self.conn = db.connect().conn
        self.result = result
        self.initial = self.size = batch_size
        self.max_size = batch_size * 10
        self.stop = stop
        self._autocheckpoint = self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")

    def close(self) -> None:
        """Restore the connection's automatic checkpoints."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(self._autocheckpoint)}")

    def reset(self) -> None:
        """Start a new table from the initial batch size (row costs differ between tables)."""
        self.size = self.initial

    def write(self, fn: Any) -> Any:
        held: list[float] = []

        def timed(conn: sqlite3.Connection) -> Any:
            held.append(time.perf_counter())  # the lock is ours from here until COMMIT returns
            return fn(conn)

        value = self.db.write(timed)
        elapsed = time.perf_counter() - held[-1]
        self.result.transactions += 1
        self.result.longest_lock_s = max(self.result.longest_lock_s, elapsed)
        scale = TARGET_LOCK_S / max(elapsed, 1e-4)
        self.size = max(100, min(self.max_size, int(self.size * min(1.5, max(0.25, scale)))))
        pause_until = time.perf_counter() + max(MIN_PAUSE_S, elapsed)
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
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
        return self.stop is not None and self.stop.is_set()


def rollup_tables(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """``(table, bucket seconds)`` of every roll-up table present (``rollup_<name>_hour|day`` with a ``ts``)."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'rollup\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    tables = []
    for name in names:
        grain = GRAINS.get(name.rsplit("_", 1)[-1])
        if grain and any(col[1] == "ts" for col in conn.execute(f'PRAGMA table_info("{name}")')):
            tables.append((name, grain))
    return tables


def _key_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """The primary-key columns of ``table`` in key order (``rowid`` for a table without a declared key)."""
    cols = sorted((c[5], c[1]) for c in conn.execute(f'PRAGMA table_info("{table}")') if c[5] > 0)
    return [name for _, name in cols] or ["rowid"]


def prune(
    db: Database,
    before: float,
    *,
    batch_size: int = 2000,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> PruneResult:
    """Delete calls that started before ``before`` (Unix seconds) and roll-up buckets that ended by then.

    ``stop`` (an event) ends the work between two batches. With ``dry_run`` nothing is deleted and the result
    counts what would be.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    started = time.perf_counter()
    result = PruneResult(before=before, dry_run=dry_run)
    conn = db.connect().conn
    tables = rollup_tables(conn)
    if dry_run:
        result.calls = conn.execute(f"SELECT count(*) FROM {CALLS} WHERE started_at < ?", (before,)).fetchone()[0]
        for table, grain in tables:
            sql = f'SELECT count(*) FROM "{table}" WHERE ts <= ?'
            result.rollup_rows += conn.execute(sql, (before - grain,)).fetchone()[0]
    else:
        # Count every row into the cumulative metrics and the roll-ups before it goes: /metrics counters must never
        # go down, and a roll-up bucket that outlives the cutoff must hold all of its calls.
        try:
            Counters(db).refresh()
            Rollups(db).refresh()
        except sqlite3.Error:
            logger.exception("llm_monitor_mw: could not count calls before pruning them; pruning anyway")
        batches = _Batches(db, result, batch_size, stop)
        try:
            _prune_calls(conn, batches, before)
            for table, grain in tables:
                if batches.stopped:
                    break
                batches.reset()
                _prune_rollup(conn, batches, table, before - grain)
            result.stopped = batches.stopped
        finally:
            batches.close()
    result.seconds = time.perf_counter() - started
    return result


def _prune_calls(conn: sqlite3.Connection, batches: _Batches, before: float) -> None:
    lo, hi = conn.execute(f"SELECT min(id), max(id) FROM {CALLS} WHERE started_at < ?", (before,)).fetchone()
    if lo is None:
        return
    # The newest row stays, whatever its age: SQLite hands out max(id) + 1 next, so an emptied table would reuse
    # ids that the roll-up and counter cursors have already passed, and those calls would never be counted.
    newest = conn.execute(f"SELECT max(id) FROM {CALLS}").fetchone()[0]
    hi = min(hi, newest - 1)
    delete = f"DELETE FROM {CALLS} WHERE id >= ? AND id < ? AND started_at < ?"
    while lo <= hi and not batches.stopped:
        # The batch ends after `size` existing rows, however sparse the ids are after earlier prunes.
        row = conn.execute(f"SELECT id FROM {CALLS} WHERE id >= ? ORDER BY id LIMIT 1 OFFSET ?", (lo, batches.size))
        end = min(hi + 1, (row.fetchone() or (hi + 1,))[0])
        batches.result.calls += batches.write(lambda c, lo=lo, end=end: c.execute(delete, (lo, end, before)).rowcount)
        lo = end


def _prune_rollup(conn: sqlite3.Connection, batches: _Batches, table: str, last_ts: float) -> None:
    """Delete rows with ``ts <= last_ts``: keys are read outside the lock, deleted by key inside it."""
    keys = _key_columns(conn, table)
    select = f'SELECT {", ".join(keys)} FROM "{table}" WHERE ts <= ? LIMIT ?'
    delete = f'DELETE FROM "{table}" WHERE {" AND ".join(f"{k} = ?" for k in keys)}'

    def remove(c: sqlite3.Connection, rows: list[Any]) -> int:
        return c.executemany(delete, rows).rowcount

    while not batches.stopped:
        rows = conn.execute(select, (last_ts, batches.size)).fetchall()
        if not rows:
            return
        batches.result.rollup_rows += batches.write(lambda c, rows=rows: remove(c, rows))


def vacuum(db: Database) -> None:
    """Rewrite the file to return freed pages to the file system (blocks writers while it runs), then truncate
    the WAL."""
    conn = db.connect().conn  # its busy timeout waits for a writer that holds the lock
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class Retention:
    """Prunes calls older than ``days`` on a daemon thread: shortly after :meth:`start`, then every ``interval``.

    Several processes sharing one file may each run one: a run with nothing to do costs one indexed lookup, and
    the intervals are jittered so they do not line up.
    """

    first_delay: float = 10.0
    """Seconds from :meth:`start` to the first run."""
    interval: float = 3600.0
    """Seconds between runs (±10 % jitter)."""

    def __init__(self, db: Database, days: float) -> None:
        if not days > 0:
            raise ValueError("retention days must be positive")
        self.db = db
        self.days = days
        self.runs = 0
        self.failures = 0
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
        oldest = self.db.connect().conn.execute(f"SELECT min(started_at) FROM {CALLS}").fetchone()[0]
        due = (oldest is not None and oldest < cutoff) or self._has_old_rollups(cutoff)
        self.last_result = prune(self.db, cutoff, stop=self._stop) if due else None
        self.runs += 1
        result = self.last_result
        if result is not None and (result.calls or result.rollup_rows):
            logger.info(
                "llm_monitor_mw: retention pruned %d calls and %d roll-up rows older than %.4g days in %.1f s",
                result.calls,
                result.rollup_rows,
                self.days,
                result.seconds,
            )
        return result

    def _has_old_rollups(self, cutoff: float) -> bool:
        conn = self.db.connect().conn
        for table, grain in rollup_tables(conn):
            if conn.execute(f'SELECT 1 FROM "{table}" WHERE ts <= ? LIMIT 1', (cutoff - grain,)).fetchone():
                return True
        return False

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
                    logger.exception("llm_monitor_mw: retention run failed on %s", self.db.path)
                delay = self.interval * random.uniform(0.9, 1.1)
        finally:
            self.db.close()
