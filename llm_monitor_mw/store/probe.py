"""A cheap, real check that the SQLite file is there, readable and writable, for health endpoints."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .database import Database, is_busy
from .schema import CALLS

PROBE_TIMEOUT_S = 0.5
"""How long the probe waits for another process's write lock before reporting the file busy."""


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    """What :func:`probe` found. ``writable`` is ``None`` when another writer held the lock (``busy``) throughout."""

    reachable: bool
    writable: bool | None
    busy: bool
    error: str | None = None

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


def check_connection(conn: sqlite3.Connection, *, close: bool) -> DatabaseProbe:
    """Read one row of ``calls`` and take the write lock for a moment through ``conn`` (closed after if ``close``)."""
    try:
        try:
            conn.execute(f"SELECT id FROM {CALLS} ORDER BY id DESC LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            if is_busy(exc):
                return DatabaseProbe(reachable=True, writable=None, busy=True)
            return DatabaseProbe(reachable=False, writable=None, busy=False, error=f"cannot read: {exc}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:  # a write that changes nothing: the lock alone does not show that a file opened read-only refuses
                conn.execute(f"UPDATE {CALLS} SET id = id WHERE 0")
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            if is_busy(exc):
                return DatabaseProbe(reachable=True, writable=None, busy=True)
            return DatabaseProbe(reachable=True, writable=False, busy=False, error=f"cannot write: {exc}")
        return DatabaseProbe(reachable=True, writable=True, busy=False)
    finally:
        if close:
            conn.close()
