"""Opening the SQLite file: WAL, busy timeout, one connection per thread, retry on "database is locked".

A file deleted or replaced while the app runs is noticed (as :class:`logging.handlers.WatchedFileHandler` does:
the path's ``(st_dev, st_ino)`` against the identity remembered when the connection was opened, checked at most
every :attr:`Database.check_interval` seconds per thread) and the thread's connection is reopened onto whatever
is at the path now, creating and migrating it if needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from .engine.base import Dialect
from .schema import migrate

logger = logging.getLogger("llm_monitor_mw")

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


def is_busy(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database is locked/busy" (retryable)."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


FileIdentity = tuple[int, int]
"""``(st_dev, st_ino)`` of a file."""


def file_identity(path: str) -> FileIdentity | None:
    """``(st_dev, st_ino)`` of ``path``, ``None`` when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class _Opened:
    """This thread's connection and what the path held when it was opened."""

    __slots__ = ("checked_at", "db", "ident", "pid", "shm", "wal")

    def __init__(self, db: sqlite_utils.Database, pid: int, ident: FileIdentity | None, path: str) -> None:
        self.db = db
        self.pid = pid
        self.ident = ident
        self.wal = file_identity(f"{path}-wal")
        self.shm = file_identity(f"{path}-shm")
        self.checked_at = time.monotonic()


class Database:
    """A SQLite file shared by threads and processes.

    Each thread (and each process, after fork) gets its own connection. Connections run in autocommit mode;
    writers open ``BEGIN IMMEDIATE`` transactions explicitly, so they queue on SQLite's busy handler instead of
    deadlocking on a lock upgrade.

    ``check_interval``: how often (seconds, per thread) :meth:`connect` checks that the path still names the file
    the connection has open; a deleted or replaced file is then reopened (a warning is logged once per lost file).
    """

    name = "sqlite"
    dialect = Dialect()
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: str | os.PathLike[str], *, check_interval: float = 1.0) -> None:
        self.path = str(path)
        self.location = self.path
        self.check_interval = check_interval
        self._local = threading.local()
        self._migrated: set[FileIdentity | None] = set()
        self._warned: set[FileIdentity | None] = set()
        self._lock = threading.Lock()
        self.reopened = 0
        """How many times a connection was reopened because the file was deleted or replaced."""

    def connect(self) -> sqlite_utils.Database:
        """This thread's connection, opened (and the schema migrated) on first use, and reopened when the file at
        :attr:`path` is no longer the one it has open."""
        opened: _Opened | None = getattr(self._local, "opened", None)
        pid = os.getpid()
        if opened is not None and opened.pid == pid:
            if self.path == ":memory:" or time.monotonic() - opened.checked_at < self.check_interval:
                return opened.db
            ident = file_identity(self.path)
            if ident is not None and ident == opened.ident:
                opened.checked_at = time.monotonic()
                return opened.db
            with self._lock:
                self.reopened += 1
                warn = opened.ident not in self._warned  # once per lost file, however many threads notice
                self._warned.add(opened.ident)
                self._migrated.discard(opened.ident)  # its inode number may be reused once closed
            self._drop(opened)
            if warn:
                logger.warning(
                    "llm_monitor_mw: the database file %s was %s while open; reopening it",
                    self.path,
                    "deleted" if ident is None else "replaced",
                )
        return self._open(pid)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (the :class:`~llm_monitor_mw.store.engine.base.Engine` interface)."""
        return self.connect().conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside a read transaction (``BEGIN`` deferred: the snapshot is taken at the
        first read); every statement in the block sees the same snapshot. Nested use joins the outer one."""
        conn = self.connection()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")  # read only: nothing to commit

    def iterate(self, sql: str, params: Sequence[Any] = (), *, size: int = 1000) -> Iterator[tuple[Any, ...]]:
        """Stream the rows of a long read on a connection of its own (a reader never blocks this thread's)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        try:
            cursor = conn.execute(sql, list(params))
            while rows := cursor.fetchmany(size):
                yield from rows
        finally:
            conn.close()

    def _open(self, pid: int) -> sqlite_utils.Database:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            db = sqlite_utils.Database(conn)
            ident = None if self.path == ":memory:" else file_identity(self.path)
            with self._lock:
                if ident not in self._migrated:
                    self._retry(lambda: migrate(conn, self.dialect))
                    self._migrated.add(ident)
        except BaseException:
            conn.close()
            raise
        self._local.opened = _Opened(db, pid, ident, self.path)
        return db

    def _drop(self, opened: _Opened) -> None:
        """Close a connection whose file is gone from :attr:`path`, without touching what the path holds now.

        Closing the last connection to a WAL database checkpoints it and unlinks ``-wal``/``-shm`` *by name*:
        right when those are still the old file's (their identity unchanged), but they may already belong to the
        new file (another process reopened first). Then the close must not checkpoint (Python 3.12+ can say so);
        and old ``-wal``/``-shm`` files still there after the close are removed, so the new file never reads them.
        """
        self._local.opened = None
        conn = opened.db.conn
        wal, shm = f"{self.path}-wal", f"{self.path}-shm"
        try:
            if file_identity(wal) != opened.wal and hasattr(conn, "setconfig"):
                conn.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)  # type: ignore[attr-defined]
            conn.close()
        except sqlite3.Error:
            logger.warning("llm_monitor_mw: closing the connection to the old %s failed", self.path, exc_info=True)
        for name, ident in ((wal, opened.wal), (shm, opened.shm)):
            if ident is not None and file_identity(name) == ident:
                with contextlib.suppress(OSError):
                    os.unlink(name)

    def ensure(self) -> None:
        """Create the file and schema now (raises on an unusable path or a corrupt file)."""
        self.connect()

    def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        attempts: int = 50,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``fn`` in a ``BEGIN IMMEDIATE`` transaction, retrying while another process holds the lock (at most
        ``attempts`` times, not past ``deadline``, a :func:`time.monotonic` value, and not once ``stop()`` is
        true)."""
        conn = self.connect().conn

        def once() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        if deadline is None:
            return self._retry(once, attempts=attempts, stop=stop)
        # SQLite's own busy wait must not outlast the deadline either
        conn.execute(f"PRAGMA busy_timeout = {max(0, min(BUSY_TIMEOUT_MS, int((deadline - time.monotonic()) * 1000)))}")
        try:
            return self._retry(once, attempts=attempts, deadline=deadline, stop=stop)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @staticmethod
    def _retry(
        fn: Callable[[], T],
        *,
        attempts: int = 50,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> T:
        delay = 0.01
        for attempt in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == attempts - 1:
                    raise
                pause = delay * (0.5 + random.random())
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                if stop is not None and stop():
                    raise
                time.sleep(pause)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close this thread's connection."""
        opened: _Opened | None = getattr(self._local, "opened", None)
        if opened is not None:
            opened.db.conn.close()
            self._local.opened = None
