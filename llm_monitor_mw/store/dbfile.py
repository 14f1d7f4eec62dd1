"""An existing database file, opened for maintenance without creating or migrating it, and its health.

:class:`~llm_monitor_mw.store.database.Database` creates a missing file and migrates an old one, which is right
for an app that records calls and wrong for a tool asked to read a file: a typo in a path must not leave an
empty database behind. :func:`open_existing` refuses a missing, non-SQLite, corrupt or foreign file, or one
written by a newer schema version, with a :class:`DatabaseFileError` whose message is one readable line.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .database import BUSY_TIMEOUT_MS
from .schema import CALLS, SCHEMA_VERSION

SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseFileError(Exception):
    """The file cannot be used as an llm-monitor database: missing, not SQLite, corrupt, foreign or too new."""


def check_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path` once it is known to be an existing, non-empty SQLite file."""
    p = Path(path)
    if not p.exists():
        raise DatabaseFileError(f"{p}: no such file")
    if p.is_dir():
        raise DatabaseFileError(f"{p}: is a directory, not a database file")
    try:
        with p.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise DatabaseFileError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not header:
        raise DatabaseFileError(f"{p}: empty file, not an llm-monitor database")
    if header != SQLITE_MAGIC:
        raise DatabaseFileError(f"{p}: not a SQLite database")
    return p


def open_existing(path: str | os.PathLike[str], *, readonly: bool = True) -> sqlite3.Connection:
    """A connection (autocommit) to an existing llm-monitor database; never creates, migrates or changes it.

    Raises :class:`DatabaseFileError` for a missing, empty, non-SQLite or corrupt file, a SQLite file without a
    ``calls`` table, or one written by a newer schema version than this package understands.
    """
    p = check_file(path)
    mode = "ro" if readonly else "rw"
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"{p}: cannot open ({exc})") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_calls = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CALLS,)).fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseFileError(f"{p}: corrupt or unreadable database ({exc})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise DatabaseFileError(
            f"{p}: written by a newer llm-monitor-mw (schema version {version}; this one understands up to"
            f" {SCHEMA_VERSION}): upgrade the package"
        )
    if not has_calls:
        conn.close()
        raise DatabaseFileError(f"{p}: a SQLite database, but not an llm-monitor one (no {CALLS!r} table)")
    return conn


@dataclass(frozen=True, slots=True)
class Health:
    """What ``llm-monitor check`` reports about a database file."""

    path: str
    size_bytes: int
    wal_bytes: int
    free_bytes: int
    journal_mode: str
    schema_version: int
    calls: int
    first_call_at: float | None
    last_call_at: float | None
    integrity: list[str] = field(default_factory=list)
    """``["ok"]``, or the problems ``PRAGMA quick_check`` found."""

    @property
    def current_schema(self) -> int:
        """The schema version this package writes."""
        return SCHEMA_VERSION

    @property
    def healthy(self) -> bool:
        """Whether the integrity check passed."""
        return self.integrity == ["ok"]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (times as ISO-8601 UTC)."""
        return {
            "path": self.path,
            "healthy": self.healthy,
            "schema_version": self.schema_version,
            "current_schema_version": SCHEMA_VERSION,
            "calls": self.calls,
            "first_call_at": iso(self.first_call_at),
            "last_call_at": iso(self.last_call_at),
            "size_bytes": self.size_bytes,
            "wal_bytes": self.wal_bytes,
            "free_bytes": self.free_bytes,
            "journal_mode": self.journal_mode,
            "integrity": self.integrity,
        }


def health(path: str | os.PathLike[str], *, max_errors: int = 10) -> Health:
    """Open ``path`` read-only and report its size, schema, rows, time span and ``PRAGMA quick_check``.

    Raises :class:`DatabaseFileError` when the file cannot be opened as an llm-monitor database at all.
    """
    conn = open_existing(path)
    try:
        p = Path(path)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        try:
            calls = conn.execute(f"SELECT count(*) FROM {CALLS}").fetchone()[0]
            first, last = conn.execute(f"SELECT min(started_at), max(started_at) FROM {CALLS}").fetchone()
            integrity = [r[0] for r in conn.execute(f"PRAGMA quick_check({int(max_errors)})")]
        except sqlite3.DatabaseError as exc:
            if "malformed" not in str(exc) and "not a database" not in str(exc):
                raise
            calls, first, last, integrity = 0, None, None, [str(exc)]
        wal = Path(f"{p}-wal")
        return Health(
            path=str(p.resolve()),
            size_bytes=p.stat().st_size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            free_bytes=free_pages * page_size,
            journal_mode=conn.execute("PRAGMA journal_mode").fetchone()[0],
            schema_version=conn.execute("PRAGMA user_version").fetchone()[0],
            calls=calls,
            first_call_at=first,
            last_call_at=last,
            integrity=integrity,
        )
    finally:
        conn.close()


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO-8601 UTC with milliseconds and a ``Z``; ``None`` for ``None`` and for what no date can
    show (a stored infinity, a time before year 1 or after 9999)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError, TypeError):
        return None
