"""A cheap, real check that the database (a SQLite file or a PostgreSQL server) is there, readable and writable,
for health endpoints.

Besides the write path (what recording needs), the probe runs the reads the dashboard and ``/metrics`` depend on,
bounded so that it stays cheap at any size: an aggregate over the newest calls of the last hour (at most
:data:`READ_SAMPLE` rows, through the ``started_at`` index), the last day of the hourly roll-up, and one row of every
roll-up and counter table. A dropped or damaged table, a missing column of ``calls`` or of the hourly roll-up, or
a corrupt recent page shows up there. The reads are the same SQL on both engines (``total()`` from the dialect).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .database import is_busy
from .engine.base import Connection, Dialect, Engine
from .schema import CALLS, COUNTER_DDL, ROLLUP_DDL

SQLITE = Dialect()
_BUSY_ERRORS = ("LockNotAvailable", "QueryCanceled")
"""PostgreSQL errors (psycopg class names) that mean "another transaction held the lock past the timeout"."""

PROBE_TIMEOUT_S = 0.5
"""How long the probe waits for another process's write lock before reporting the database busy."""
READ_SAMPLE = 1000
"""The read-path check aggregates at most this many of the last hour's calls (the newest)."""
READ_TABLES: tuple[str, ...] = tuple(
    re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", " ".join((*ROLLUP_DDL, *COUNTER_DDL)))
)
"""The roll-up and counter tables (schema migrations 3 and 4) the dashboard and ``/metrics`` read."""


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    """What :func:`probe` found. ``writable`` is ``None`` when another writer held the lock (``busy``) throughout.

    ``read_path_ok`` is whether the reads of the dashboard and ``/metrics`` work (``None``: not checked, because
    the file could not be read at all or was busy); ``read_path_error`` says which read failed and why.
    """

    reachable: bool
    writable: bool | None
    busy: bool
    error: str | None = None
    read_path_ok: bool | None = None
    read_path_error: str | None = None

    @property
    def healthy(self) -> bool:
        """Reachable and not known to be unwritable (a busy file is being written by someone: it works)."""
        return self.reachable and self.writable is not False


def probe(db: Engine, timeout: float = PROBE_TIMEOUT_S, *, create: bool = False) -> DatabaseProbe:
    """Check that ``db`` can be read and written, without changing anything.

    SQLite: open the file anew, read ``calls``, then ``BEGIN IMMEDIATE``, a write that changes nothing,
    ``ROLLBACK``. A fresh connection, so a file deleted or replaced under a running process is noticed (that
    process's own connections still see the old, unlinked file), and so the short busy timeout does not touch the
    shared ones. The file is never created, unless ``create`` (for the first check of a monitor that has not
    written yet). PostgreSQL: see :func:`probe_server`.
    """
    if db.name != "sqlite":
        return probe_server(db, timeout, create=create)
    path: str = db.path  # type: ignore[attr-defined]
    if create:
        try:
            db.ensure()
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            return DatabaseProbe(reachable=False, writable=None, busy=is_busy(exc), error=f"cannot open: {exc}")
    if path == ":memory:":
        conn = db.connection()
        return check_connection(conn, close=False)  # type: ignore[arg-type]
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        return DatabaseProbe(reachable=False, writable=None, busy=False, error=f"cannot open the database: {exc}")
    return check_connection(conn, close=True)


def probe_server(engine: Engine, timeout: float = PROBE_TIMEOUT_S, *, create: bool = False) -> DatabaseProbe:
    """The check on a database server: read ``calls`` on this thread's connection, run the read-path checks,
    then a write transaction holding a write that changes nothing (``lock_timeout`` and ``statement_timeout`` of
    ``timeout``: a lock held longer is reported ``busy``). ``create``: connect and migrate first."""
    errors = (*engine.errors, OSError, RuntimeError)
    try:
        if create:
            engine.ensure()
        conn = engine.connection()
        conn.execute(f"SELECT id FROM {CALLS} ORDER BY id DESC LIMIT 1").fetchone()
    except errors as exc:
        return DatabaseProbe(reachable=False, writable=None, busy=False, error=f"cannot read: {exc}")
    try:
        read_error = read_path_error(conn, dialect=engine.dialect, errors=engine.errors)
    except errors as exc:  # pragma: no cover - read_path_error reports failures, raising only when busy
        read_error = f"{type(exc).__name__}: {exc}"
    reads = {"read_path_ok": read_error is None, "read_path_error": read_error}
    ms = max(1, int(timeout * 1000))

    def nothing(c: Connection) -> None:
        c.execute(f"SET LOCAL lock_timeout = {ms}")
        c.execute(f"SET LOCAL statement_timeout = {ms}")
        c.execute(f"UPDATE {CALLS} SET id = id WHERE 1 = 0")

    try:
        engine.write(nothing, attempts=1, deadline=time.monotonic() + timeout)
    except errors as exc:
        if type(exc).__name__ in _BUSY_ERRORS:
            return DatabaseProbe(reachable=True, writable=None, busy=True, **reads)
        return DatabaseProbe(reachable=True, writable=False, busy=False, error=f"cannot write: {exc}", **reads)
    return DatabaseProbe(reachable=True, writable=True, busy=False, **reads)


def read_path_error(
    conn: Connection | sqlite3.Connection,
    now: float | None = None,
    *,
    dialect: Dialect = SQLITE,
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,),
) -> str | None:
    """Run the bounded reads of the dashboard and ``/metrics`` (see the module docstring): ``None`` if they work,
    else which one failed and why. Raises only when the database is busy. ``conn`` is in autocommit mode (a failed
    read must not abort the others)."""
    now = time.time() if now is None else now
    t = dialect.total
    calls_sums = ", ".join(
        t(c) for c in ("input_tokens", "output_tokens", "total_tokens", "cost_usd", "duration_ms", "ttft_ms")
    )
    rollup_sums = ", ".join(t(c) for c in ("requests", "errors", "total_tokens", "cost_usd", "duration_sum"))
    reads: list[tuple[str, str, Sequence[Any]]] = [
        (
            "calls of the last hour",
            f"""SELECT count(*), {calls_sums}, count(CASE WHEN ok = 0 THEN 1 END)
                FROM (SELECT * FROM {CALLS} WHERE started_at >= ? ORDER BY started_at DESC LIMIT {READ_SAMPLE}) AS r""",
            (now - 3600,),
        ),
        (
            "rollup_calls_hour of the last day",
            f"SELECT count(*), {rollup_sums} FROM rollup_calls_hour WHERE ts >= ?",
            (int(now) - 86400,),
        ),
        *((table, f"SELECT * FROM {table} LIMIT 1", ()) for table in READ_TABLES),
    ]
    for what, sql, params in reads:
        try:
            conn.execute(sql, list(params)).fetchall()
        except errors as exc:
            if is_busy(exc):
                raise
            return f"{what}: {exc}"
    return None


def check_connection(conn: sqlite3.Connection, *, close: bool) -> DatabaseProbe:
    """Read one row of ``calls``, run the read-path checks and take the write lock for a moment through ``conn``
    (closed after if ``close``)."""
    try:
        try:
            conn.execute(f"SELECT id FROM {CALLS} ORDER BY id DESC LIMIT 1").fetchone()
            read_error = read_path_error(conn)
        except sqlite3.Error as exc:
            if is_busy(exc):
                return DatabaseProbe(reachable=True, writable=None, busy=True)
            return DatabaseProbe(reachable=False, writable=None, busy=False, error=f"cannot read: {exc}")
        reads = {"read_path_ok": read_error is None, "read_path_error": read_error}
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:  # a write that changes nothing: the lock alone does not show that a file opened read-only refuses
                conn.execute(f"UPDATE {CALLS} SET id = id WHERE 1 = 0")
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            if is_busy(exc):
                return DatabaseProbe(reachable=True, writable=None, busy=True, **reads)
            return DatabaseProbe(reachable=True, writable=False, busy=False, error=f"cannot write: {exc}", **reads)
        return DatabaseProbe(reachable=True, writable=True, busy=False, **reads)
    finally:
        if close:
            conn.close()
