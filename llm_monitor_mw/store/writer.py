"""The background writer: a bounded queue drained in batches into the store on one thread, projections included.

``submit`` is the only thing the caller's path touches: a length check and a ``deque.append`` (both atomic under
the GIL). On overflow the item is dropped and counted, never blocking and never growing without bound. The
writer thread turns queued items into rows with the ``prepare`` callable it was given (parsing and pricing happen
there) and writes each batch in one transaction (:meth:`Engine.write`, retried while the database is busy or the
connection was lost):

1. lock the projection cursor (:func:`~.projections.lock_cursor`: ``SELECT … FOR UPDATE`` on PostgreSQL, before
   the insert, so ids grow in commit order across processes and hosts; ``BEGIN IMMEDIATE`` on SQLite);
2. insert the batch (:func:`insert_rows`: ``COPY`` on PostgreSQL, ``executemany`` on SQLite; each row stamped
   with this writer's ``instance``);
3. project at most ``project_limit`` rows past the cursor (:data:`~.projections.LIMITS`), the batch's first, into the
   dashboard roll-ups and the ``/metrics`` counters, and move the cursor (:meth:`~.projections.Projector.project`);
4. commit.

When idle with a backlog (an old database, rows another process could not project), the writer keeps catching up
in transactions of at most ``project_limit`` rows, pausing between them as long as each held the lock.

One record never takes another with it: when a batch fails for a reason other than the database (busy after the
retries, unreachable, full, read-only), its records are inserted one by one, and a record that still fails is
retried once with its unstorable values (integers outside 64 bits, non-finite floats, types the engine cannot
bind, text PostgreSQL cannot hold) set to NULL and named in its ``error`` column; only then is it counted as
failed. Non-finite floats are set to NULL (and noted) in every row, as they would break the sums and the JSON of
every later read.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import operator
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..record import JSON_FIELDS, CallRecord
from .engine.base import Connection, Engine
from .projections import LIMIT, Progress, Projector, behind, lock_cursor
from .schema import CALL_COLUMNS, CALLS

logger = logging.getLogger("llm_monitor_mw")

_COLUMN_NAMES = tuple(CALL_COLUMNS)
_QUOTED_COLUMNS = tuple(f'"{c}"' if c == "user" else c for c in _COLUMN_NAMES)  # a reserved word in PostgreSQL
_QUOTED = ", ".join(_QUOTED_COLUMNS)
_INSERT = f"INSERT INTO {CALLS} ({_QUOTED}) VALUES ({', '.join('?' for _ in _COLUMN_NAMES)})"
_GET = operator.attrgetter(*_COLUMN_NAMES)
_BOOLS = tuple(_COLUMN_NAMES.index(c) for c in ("ok", "streamed") if c in _COLUMN_NAMES)
_JSON = tuple(_COLUMN_NAMES.index(c) for c in JSON_FIELDS)
_INSTANCE = _COLUMN_NAMES.index("instance") if "instance" in _COLUMN_NAMES else None


_json = json.JSONEncoder(separators=(",", ":"), default=str).encode
"""``json.dumps(value, separators=(",", ":"), default=str)`` without building an encoder per row."""


def insert_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (:data:`CALL_COLUMNS` order) into ``calls``: ``COPY`` where the connection offers it
    (PostgreSQL), else ``executemany`` (SQLite: a prepared statement run in C, as fast as it gets there)."""
    copy = getattr(conn, "copy_rows", None)
    if copy is not None and len(rows) > 1:
        copy(CALLS, _QUOTED_COLUMNS, rows)
    elif len(rows) == 1:
        conn.execute(_INSERT, rows[0])
    elif rows:
        conn.executemany(_INSERT, rows)


def record_row(record: CallRecord, instance: str | None = None) -> tuple[Any, ...]:
    """The row tuple for ``record``, in :data:`CALL_COLUMNS` order; ``instance`` (when given) is stamped on it."""
    values = list(_GET(record))
    for i in _BOOLS:
        values[i] = 1 if values[i] else 0
    for i in _JSON:
        value = values[i]
        values[i] = _json(value) if value else None
    if instance is not None and _INSTANCE is not None:
        values[_INSTANCE] = instance
    return tuple(values)


def insert_records(
    engine: Engine, records: Sequence[CallRecord], *, instance: str | None = None, project_limit: int = LIMIT
) -> Progress:
    """Insert ``records`` in one transaction (retried while the database is busy), projecting them (and at most
    ``project_limit`` rows of a backlog) in it, as the writer does. For tools and tests that write directly."""
    rows = [finite_row(record_row(r, instance)) for r in records]
    projector = Projector(engine)

    def fn(conn: Connection) -> Progress:
        lo = lock_cursor(conn, engine.dialect)
        insert_rows(conn, rows)
        return projector.project(conn, lo, limit=len(rows) + project_limit)

    return engine.write(fn)


_ERROR = _COLUMN_NAMES.index("error")
_FLOATS = tuple(i for i, t in enumerate(CALL_COLUMNS.values()) if t is float)
_INT64 = (-(2**63), 2**63 - 1)


def finite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with non-finite floats (inf, -inf, NaN) set to NULL and named in its ``error`` column."""
    bad = [i for i in _FLOATS if (v := row[i]).__class__ is float and v - v != 0.0]  # inf - inf and NaN are NaN
    if not bad:
        return row
    values = list(row)
    for i in bad:
        values[i] = None
    values[_ERROR] = _note(values[_ERROR], [f"{_COLUMN_NAMES[i]} not finite" for i in bad])
    return tuple(values)


def storable_row(record: CallRecord, *, instance: str | None = None, nul: bool = True) -> tuple[Any, ...]:
    """The row of ``record`` with every value the engine cannot store set to NULL and named in its ``error``
    column: integers outside 64 bits, non-finite floats, strings that are not valid Unicode (or, with ``nul``
    false, as on PostgreSQL, that hold a NUL character), other types."""
    values: list[Any] = []
    notes: list[str] = []
    for name in _COLUMN_NAMES:
        try:
            value: Any = getattr(record, name)
            if name in ("ok", "streamed"):
                value = 1 if value else 0
            elif name in JSON_FIELDS:
                value = json.dumps(value, separators=(",", ":"), default=str) if value else None
            elif name == "instance" and instance is not None:
                value = instance
        except Exception as exc:
            values.append(None)
            notes.append(f"{name} not storable ({type(exc).__name__})")
            continue
        problem = _unstorable(value, nul=nul)
        if problem:
            value = None
            notes.append(f"{name} {problem}")
        values.append(value)
    if notes:
        error = values[_ERROR]
        values[_ERROR] = _note(error if isinstance(error, str) else None, notes)
    return tuple(values)


def _unstorable(value: Any, *, nul: bool = True) -> str | None:
    """Why the engine cannot store ``value`` (``None`` if it can)."""
    if value is None or value.__class__ in (bytes, bool):
        return None
    if isinstance(value, int):
        return None if _INT64[0] <= value <= _INT64[1] else "out of the 64-bit integer range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "not finite"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "not valid Unicode"
        if not nul and "\x00" in value:
            return "holds a NUL character"
        return None
    return f"of unstorable type {type(value).__name__}"


def _note(error: str | None, notes: list[str]) -> str:
    text = "store: " + ", ".join(notes) + " (stored as NULL)"
    return f"{error}; {text}" if error else text


def database_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` is about the database (busy, unreachable, full, read-only, I/O, connection lost), not about
    the rows: inserting row by row would fail the same way."""
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.InternalError)) or type(exc) is sqlite3.DatabaseError:
        return True
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        # OperationalError: connection, disk full, lock timeout, deadlock; InternalError: read-only transaction,
        # aborted transaction; InterfaceError: the connection was closed
        trouble = (psycopg.OperationalError, psycopg.InternalError, psycopg.InterfaceError)
        return isinstance(exc, trouble) or type(exc) is psycopg.DatabaseError
    return isinstance(exc, OSError)


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the writer, for the API and health checks."""

    queued: int
    written: int
    dropped: int
    failed: int
    last_write_at: float | None
    projected_to: int | None = None
    """The projection cursor after this writer's last transaction (``None`` before its first)."""
    projection_failures: int = 0
    """Projections this writer rolled back (their rows stay past the cursor; readers add them from raw rows)."""


class _Flush:
    """A marker put in the queue by :meth:`Writer.flush`; set once everything before it is written."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class Writer:
    """Batches queued items into the ``calls`` table on a daemon thread, projecting them in the same transaction.

    ``instance`` is stamped on every row (``None``: the record's own ``instance``). ``project_limit`` bounds the
    rows projected per transaction (default: :data:`~.projections.LIMITS` of the engine).
    """

    def __init__(
        self,
        engine: Engine,
        prepare: Callable[[Any], CallRecord],
        *,
        max_queue: int = 100_000,
        batch_size: int = 1000,
        interval: float = 0.25,
        instance: str | None = None,
        project_limit: int | None = None,
    ) -> None:
        self.engine = engine
        self.prepare = prepare
        self.instance = instance
        self._projector = Projector(engine, limit=project_limit)
        self.project_limit = self._projector.limit
        self._nul_ok = engine.dialect.name != "postgresql"
        self._behind = True  # unknown until the first transaction: a started writer checks once for a backlog
        self._pause = 0.0
        self.projected_to: int | None = None
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_write_at: float | None = None
        self._deadline: float | None = None  # set while draining at exit: busy retries stop there
        self._giving_up = False  # set by close() once its flush is over: a write still retrying stops
        _register_exit_flush(self)

    @property
    def db(self) -> Engine:
        """The engine (the name older code used)."""
        return self.engine

    # ---- caller's path -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread in this process if it is not running (cheap when it is).

        Called on the caller's thread when a call begins (``Capturer.begin``), never from :meth:`submit`: a
        submission may come from a garbage-collection finaliser, and a thread started there during interpreter
        shutdown can hang the exit.
        """
        if self._thread is None or self._pid != os.getpid():
            self._start()

    def submit(self, item: Any) -> bool:
        """Queue ``item``; ``False`` (and counted as dropped) when the queue is full or the writer closed.

        Never starts a thread (see :meth:`start`); what is queued while no thread runs is written by the next
        :meth:`flush` or at exit.
        """
        if len(self._queue) >= self.max_queue or self._closed:
            self.dropped += 1
            return False
        self._queue.append(item)
        return True

    # ---- control -------------------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued before this call is on disk; ``False`` on timeout."""
        if self._thread is None or self._pid != os.getpid():
            if not self._queue:
                return True  # nothing was ever submitted in this process
            self._start()
        elif not self._thread.is_alive():
            if self._closed:
                return not self._queue
            self._start()
        # Always go through the queue, even when it looks empty: the writer may hold a batch it has popped but
        # not yet committed, and the marker is released only after that batch.
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        return marker.event.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, then stop the thread, all within ``timeout`` seconds (``None``: wait as long as it takes).

        Past the deadline a write still retrying an unreachable database gives up (its records count as failed),
        and records still queued are dropped, counted and logged: closing never hangs on the database. Later
        submissions are dropped (and counted).
        """
        if self._closed:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self._deadline = deadline  # writes starting from now stop retrying at the deadline
        self.flush(timeout)
        self._closed = True
        self._giving_up = True  # a write retrying since before the flush stops at its next retry
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        left = 0
        while self._queue:
            with contextlib.suppress(IndexError):  # the thread may still take one
                if not isinstance(self._queue.popleft(), _Flush):
                    left += 1
        if left:
            self.dropped += left
            logger.error("llm_monitor_mw: %d call record(s) not written to %s before close", left, self.engine.location)

    def close_at_exit(self, timeout: float = 5.0) -> None:
        """:meth:`close` for interpreter exit: never starts a thread (Python 3.12+ refuses new threads then, and
        3.11 can hang); when none is running in this process, what is queued is written on the calling thread,
        for at most ``timeout`` seconds."""
        if self._closed:
            return
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            self.close(timeout)
            return
        self._closed = True
        if self._pid != os.getpid():
            self._after_fork()
        self._drain_inline(time.monotonic() + timeout)

    def _drain_inline(self, deadline: float) -> None:
        """Write the queue on this thread until it is empty or ``deadline`` passes (then what is left is dropped,
        and counted)."""
        queue = self._queue
        self._deadline = deadline
        try:
            while queue and time.monotonic() < deadline:
                self._drain_batch(queue)
        finally:
            self._deadline = None
        left = sum(1 for item in queue if not isinstance(item, _Flush))
        if left:
            self.dropped += left
            logger.error("llm_monitor_mw: %d call record(s) not written to %s before exit", left, self.engine.location)
        queue.clear()

    def stats(self) -> WriterStats:
        return WriterStats(
            queued=sum(1 for item in list(self._queue) if not isinstance(item, _Flush)),
            written=self.written,
            dropped=self.dropped,
            failed=self.failed,
            last_write_at=self.last_write_at,
            projected_to=self.projected_to,
            projection_failures=self._projector.failures,
        )

    # ---- writer thread -------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._thread is not None and self._pid == pid and self._thread.is_alive():
                return
            if self._pid != pid:  # forked without the at-fork hook having run (it always runs on POSIX)
                self._after_fork()
            self._thread = threading.Thread(target=self._run, name="llm-monitor-writer", daemon=True)
            self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue, thread and counters are not ours."""
        self._queue = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        self._pid = os.getpid()
        self.written = self.dropped = self.failed = 0
        self.last_write_at = None
        self._behind = True
        self.projected_to = None

    def _stopping(self) -> bool:
        """Whether a retrying write should give up: ``close()`` waited long enough, or its deadline passed."""
        return self._giving_up or (self._deadline is not None and time.monotonic() >= self._deadline)

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(self._pause if self._behind else self.interval)
            self._wake.clear()
            while queue:
                self._drain_batch(queue)
            if self._closed and not queue:
                with contextlib.suppress(Exception):
                    self.engine.close()  # this thread's connection: the file is released once the writer is closed
                return
            if self._behind:
                self._catch_up()

    def _catch_up(self) -> None:
        """One projection-only transaction when rows wait past the cursor (checked by a read first: an idle,
        caught-up writer never opens a write transaction). Then pause as long as it held the lock."""
        try:
            if not behind(self.engine):
                self._behind = False
                return
            began = time.monotonic()
            self._transaction([])
            self._pause = min(1.0, time.monotonic() - began)
        except Exception:
            self._behind = False  # the next batch tries again
            logger.exception("llm_monitor_mw: catching up the projections of %s failed", self.engine.location)

    def _transaction(self, rows: Sequence[tuple[Any, ...]]) -> Progress:
        """Lock the cursor, insert ``rows``, project, commit (see the module docstring)."""
        # at most project_limit rows, however large the batch: under a sustained load the projections may lag
        # (readers add the rows past the cursor from raw rows) rather than the lock be held long
        projector, dialect, limit = self._projector, self.engine.dialect, self.project_limit

        def fn(conn: Connection) -> Progress:
            lo = lock_cursor(conn, dialect)
            insert_rows(conn, rows)
            return projector.project(conn, lo, limit=limit)

        progress = self.engine.write(fn, deadline=self._deadline, stop=self._stopping)
        self.projected_to = progress.cursor
        self._behind = progress.behind and not progress.failed
        if not self._behind:
            self._pause = 0.0
        return progress

    def _drain_batch(self, queue: deque[Any]) -> None:
        records: list[CallRecord] = []
        markers: list[_Flush] = []
        while queue and len(records) < self.batch_size:
            item = queue.popleft()
            if isinstance(item, _Flush):
                markers.append(item)
                break  # write what came before the marker, then release it
            try:
                records.append(self.prepare(item))
            except Exception:
                self.failed += 1
                logger.exception("llm_monitor_mw: could not build a call record")
        if records:
            self._write(records)
        for marker in markers:
            marker.event.set()

    def _write(self, records: list[CallRecord]) -> None:
        try:
            rows = [finite_row(record_row(r, self.instance)) for r in records]
        except Exception:
            rows = None  # some record cannot even be turned into a row: one by one below
        if rows is not None:
            try:
                self._transaction(rows)
            except Exception as exc:
                if database_trouble(exc):
                    self.failed += len(records)
                    logger.exception(
                        "llm_monitor_mw: could not write %d call record(s) to %s", len(records), self.engine.location
                    )
                    return
            else:
                self.written += len(records)
                self.last_write_at = time.time()
                return
        self._write_one_by_one(records)

    def _write_one_by_one(self, records: list[CallRecord]) -> None:
        """After a batch failed because of its rows: each record alone, then cleaned, then counted as failed."""
        for n, record in enumerate(records):
            try:
                self._insert_one(finite_row(record_row(record, self.instance)))
            except Exception as exc:
                if database_trouble(exc):
                    self.failed += len(records) - n
                    logger.exception(
                        "llm_monitor_mw: could not write %d call record(s) to %s",
                        len(records) - n,
                        self.engine.location,
                    )
                    return
                try:
                    self._insert_one(storable_row(record, instance=self.instance, nul=self._nul_ok))
                except Exception:
                    self.failed += 1
                    logger.exception("llm_monitor_mw: could not write a call record to %s", self.engine.location)
                    continue
            self.written += 1
            self.last_write_at = time.time()

    def _insert_one(self, row: tuple[Any, ...]) -> None:
        self._transaction([row])


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()
_exit_hooks: list[Callable[[], None]] = []


def _register_exit_flush(writer: Writer) -> None:
    _writers.add(writer)


def _reset_after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def before_exit_flush(hook: Callable[[], None]) -> None:
    """Run ``hook()`` at interpreter exit before the writers' final flush (e.g. to finish abandoned streams, so
    their records are in that flush). Hooks must be quick and must not block; one that raises is logged."""
    _exit_hooks.append(hook)


@atexit.register
def _flush_all_at_exit() -> None:
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:  # pragma: no cover - best effort at shutdown
            logger.exception("llm_monitor_mw: exit hook %r failed", hook)
    for writer in list(_writers):
        try:
            writer.close_at_exit(timeout=5.0)
        except Exception:  # pragma: no cover - best effort at shutdown
            logger.exception("llm_monitor_mw: flush at exit failed")
