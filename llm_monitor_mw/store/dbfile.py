"""An existing database, opened for maintenance without creating or migrating it, and its health.

:class:`~llm_monitor_mw.store.database.Database` creates a missing file and migrates an old one, which is right
for an app that records calls and wrong for a tool asked to read a file: a typo in a path must not leave an
empty database behind. :func:`open_existing` refuses a missing, non-SQLite, corrupt or foreign file, or one
written by a newer schema version, with a :class:`DatabaseFileError` whose message is one readable line.

A target may also be a PostgreSQL URL (``postgresql://`` or ``postgres://``): :func:`check_target` and
:func:`open_store` accept both, :func:`postgres_health` reports on a server. Messages name a database by its
location (the URL without its password), never by the URL itself.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .database import BUSY_TIMEOUT_MS
from .engine import is_postgres_url, open_engine
from .schema import CALLS, SCHEMA_VERSION

if TYPE_CHECKING:
    from .engine.base import Engine
    from .engine.postgres import PgConnection

SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseFileError(Exception):
    """The file cannot be used as an llm-monitor database: missing, not SQLite, corrupt, foreign or too new."""


class DatabaseUnreachable(Exception):
    """The database server could not be reached (down, refused, timed out): an operation that failed."""


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


# ---- either engine ----------------------------------------------------------------------------------------------

PG_TABLE_PATTERNS = ("calls", "llm_monitor_schema", "rollup\\_%", "counter%", "alert\\_%")
"""The tables of an llm-monitor schema on PostgreSQL (``LIKE`` patterns), for its size."""


def location(target: str | os.PathLike[str]) -> str:
    """How to name ``target`` in messages: a file path as given, a URL without its password."""
    if is_postgres_url(target):
        from .engine.postgres import redact

        return redact(os.fspath(target))
    return os.fspath(target)


def _pg_connection(url: str) -> PgConnection:
    """A connection to an existing PostgreSQL llm-monitor database (not migrated, never created)."""
    try:
        from .engine.postgres import PgConnection, PostgresEngine
    except ImportError as exc:  # psycopg missing
        raise DatabaseFileError(
            f"PostgreSQL needs psycopg ({exc.name} is not installed): pip install 'llm-monitor-mw[postgres]'"
        ) from None
    import psycopg

    where = location(url)
    try:
        conn = PgConnection(PostgresEngine(url))
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "authentication failed" in reason or "does not exist" in reason:
            raise DatabaseFileError(f"{where}: cannot connect ({reason})") from None
        raise DatabaseUnreachable(f"{where}: cannot connect ({reason})") from None
    except psycopg.Error as exc:
        raise DatabaseFileError(f"{where}: cannot connect ({' '.join(str(exc).split())})") from None
    return conn


def _pg_version(conn: PgConnection, url: str) -> int:
    from .schema import postgres_version

    version = postgres_version(conn)
    where = location(url)
    if version is None or not conn.execute("SELECT to_regclass(?) IS NOT NULL", [CALLS]).fetchone()[0]:
        raise DatabaseFileError(f"{where}: a PostgreSQL database, but not an llm-monitor one (no schema yet)")
    if version > SCHEMA_VERSION:
        raise DatabaseFileError(
            f"{where}: written by a newer llm-monitor-mw (schema version {version}; this one understands up to"
            f" {SCHEMA_VERSION}): upgrade the package"
        )
    return version


def check_target(target: str | os.PathLike[str]) -> str:
    """Check that ``target`` (a SQLite file or a PostgreSQL URL) is a usable llm-monitor database, without creating
    or migrating anything; returns its :func:`location`. Raises :class:`DatabaseFileError` (or
    :class:`DatabaseUnreachable` for a server that does not answer)."""
    if is_postgres_url(target):
        conn = _pg_connection(os.fspath(target))
        try:
            _pg_version(conn, os.fspath(target))
        finally:
            conn.close()
    else:
        open_existing(target).close()
    return location(target)


def open_store(target: str | os.PathLike[str]) -> Engine:
    """The engine of an existing llm-monitor database, checked first with :func:`check_target`."""
    check_target(target)
    return open_engine(target)


@dataclass(frozen=True, slots=True)
class PostgresHealth:
    """What ``llm-monitor check`` reports about a PostgreSQL database."""

    location: str
    server_version: str
    schema_version: int
    calls: int
    first_call_at: float | None
    last_call_at: float | None
    size_bytes: int
    """``pg_total_relation_size`` (tables, indexes, TOAST) summed over the llm-monitor tables."""
    calls_bytes: int
    """``pg_total_relation_size('calls')``."""

    healthy = True
    engine = "postgresql"

    @property
    def current_schema(self) -> int:
        """The schema version this package writes."""
        return SCHEMA_VERSION

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (times as ISO-8601 UTC)."""
        return {
            "engine": self.engine,
            "location": self.location,
            "healthy": self.healthy,
            "server_version": self.server_version,
            "schema_version": self.schema_version,
            "current_schema_version": SCHEMA_VERSION,
            "calls": self.calls,
            "first_call_at": iso(self.first_call_at),
            "last_call_at": iso(self.last_call_at),
            "size_bytes": self.size_bytes,
            "calls_bytes": self.calls_bytes,
        }


def postgres_health(url: str) -> PostgresHealth:
    """Report on the llm-monitor database at ``url``: server and schema version, rows, time span, size."""
    conn = _pg_connection(url)
    try:
        version = _pg_version(conn, url)
        server = conn.execute("SELECT current_setting('server_version')").fetchone()[0]
        calls, first, last = conn.execute(f"SELECT count(*), min(started_at), max(started_at) FROM {CALLS}").fetchone()
        likes = " OR ".join("c.relname LIKE ?" for _ in PG_TABLE_PATTERNS)
        size = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND ({likes})",
            PG_TABLE_PATTERNS,
        ).fetchone()[0]
        calls_bytes = conn.execute("SELECT pg_total_relation_size(CAST(? AS regclass))", [CALLS]).fetchone()[0]
        return PostgresHealth(
            location=location(url),
            server_version=str(server).split()[0],
            schema_version=version,
            calls=int(calls),
            first_call_at=first,
            last_call_at=last,
            size_bytes=int(size),
            calls_bytes=int(calls_bytes),
        )
    finally:
        conn.close()
