"""Opening the SQLite file: WAL, busy timeout, one connection per thread, retry on "database is locked"."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlite_utils

from .schema import migrate

logger = logging.getLogger("llm_monitor_mw")

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


def is_busy(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database is locked/busy" (retryable)."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class Database:
    """A SQLite file shared by threads and processes.

    Each thread (and each process, after fork) gets its own connection. Connections run in autocommit mode;
    writers open ``BEGIN IMMEDIATE`` transactions explicitly, so they queue on SQLite's busy handler instead of
    deadlocking on a lock upgrade.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._migrated = False
        self._lock = threading.Lock()

    def connect(self) -> sqlite_utils.Database:
        """This thread's connection, opened (and the schema migrated) on first use."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        pid = os.getpid()
        if db is not None and getattr(self._local, "pid", None) == pid:
            return db
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = NORMAL")
        db = sqlite_utils.Database(conn)
        with self._lock:
            if not self._migrated:
                self._retry(lambda: migrate(db))
                self._migrated = True
        self._local.db = db
        self._local.pid = pid
        return db

    def ensure(self) -> None:
        """Create the file and schema now (raises on an unusable path or a corrupt file)."""
        self.connect()

    def write(self, fn: Callable[[sqlite3.Connection], T], *, attempts: int = 50) -> T:
        """Run ``fn`` in a ``BEGIN IMMEDIATE`` transaction, retrying while another process holds the lock."""
        conn = self.connect().conn

        def once() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._retry(once, attempts=attempts)

    @staticmethod
    def _retry(fn: Callable[[], T], *, attempts: int = 50) -> T:
        delay = 0.01
        for attempt in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == attempts - 1:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None
