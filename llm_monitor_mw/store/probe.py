"""A cheap, real check that the SQLite file is there, readable and writable, for health endpoints.

Besides the write path (what recording needs), the probe runs the reads the dashboard and ``/metrics`` depend on,
bounded so that it stays cheap at any size: an aggregate over the newest calls of the last hour (at most
:data:`READ_SAMPLE` rows, through the ``started_at`` index), the last day of the hourly roll-up, and one row of every
roll-up and counter table. A dropped or damaged table, a missing column of ``calls`` or of the hourly roll-up, or
a corrupt recent page shows up there.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .database import Database, is_busy
from .schema import CALLS, COUNTER_DDL, ROLLUP_DDL

PROBE_TIMEOUT_S = 0.5
"""How long the probe waits for another process's write lock before reporting the file busy."""
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


def probe(db: Database, timeout: float = PROBE_TIMEOUT_S, *, create: bool = False) -> DatabaseProbe:
    """Open the file anew, read ``calls``, then ``BEGIN IMMEDIATE``, a write that changes nothing, ``ROLLBACK``.

    A fresh connection, so a file deleted or replaced under a running process is noticed (that process's own
    connections still see the old, unlinked file), and so the short busy timeout does not touch the shared ones.
    The file is never created, unless ``create`` (for the first check of a monitor that has not written yet).
    """
    if create:
        try:
            db.ensure()
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            return DatabaseProbe(reachable=False, writable=None, busy=is_busy(exc), error=f"cannot open: {exc}")
    if db.path == ":memory:":
        conn = db.connect().conn
        return check_connection(conn, close=False)
    uri = f"file:{quote(str(Path(db.path).resolve()))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        return DatabaseProbe(reachable=False, writable=None, busy=False, error=f"cannot open the database: {exc}")
    return check_connection(conn, close=True)


def read_path_error(conn: sqlite3.Connection, now: float | None = None) -> str | None:
    """Run the bounded reads of the dashboard and ``/metrics`` (see the module docstring): ``None`` if they work,
    else which one failed and why. Raises only when the database is busy."""
    now = time.time() if now is None else now
    reads = [
        (
            "calls of the last hour",
            f"""SELECT count(*), total(input_tokens), total(output_tokens), total(total_tokens), total(cost_usd),
                       total(duration_ms), total(ttft_ms), count(CASE WHEN ok = 0 THEN 1 END)
                FROM (SELECT * FROM {CALLS} WHERE started_at >= ? ORDER BY started_at DESC LIMIT {READ_SAMPLE})""",
            (now - 3600,),
        ),
        (
            "rollup_calls_hour of the last day",
            "SELECT count(*), total(requests), total(errors), total(total_tokens), total(cost_usd), total(duration_sum)"
            " FROM rollup_calls_hour WHERE ts >= ?",
            (int(now) - 86400,),
        ),
        *((table, f"SELECT * FROM {table} LIMIT 1", ()) for table in READ_TABLES),
    ]
    for what, sql, params in reads:
        try:
            conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
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
                conn.execute(f"UPDATE {CALLS} SET id = id WHERE 0")
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
