"""Helpers for the CLI tests: running ``llm-monitor`` as a subprocess, seeded databases on either engine."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import sqlite_utils

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.engine import Engine, is_postgres_url, open_engine
from llm_monitor_mw.store.projections import catch_up
from llm_monitor_mw.store.schema import CALL_COLUMNS, MIGRATIONS
from llm_monitor_mw.store.writer import finite_row, record_row

_QUOTED = ", ".join(f'"{c}"' for c in CALL_COLUMNS)
RAW_INSERT = f"INSERT INTO calls ({_QUOTED}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"

NOW = time.time()
HOUR = 3600
DAY = 86400


def run(
    cli: Path, *args: object, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run ``llm-monitor args...`` and capture its output as text."""
    return subprocess.run(
        [str(cli), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, one ``llm-monitor: error:`` line naming ``fragments``, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-monitor: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def record(started_at: float, **kw: object) -> CallRecord:
    values: dict[str, object] = {
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o-mini",
        "status_code": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "duration_ms": 120.0,
    }
    values.update(kw)
    return CallRecord(started_at=started_at, **values)  # type: ignore[arg-type]


def insert_raw(engine: Engine, records: Iterable[CallRecord]) -> None:
    """Insert ``records`` as an old version did: rows only, nothing projected (the cursor stays behind)."""
    rows = [finite_row(record_row(r)) for r in records]
    if rows:
        engine.write(lambda conn: conn.executemany(RAW_INSERT, rows))


def seed(target: Path | str, records: Iterable[CallRecord], *, rollups: bool = True) -> Engine:
    """A database at ``target`` (a SQLite path or a PostgreSQL URL) holding ``records``; with ``rollups`` they are
    projected (roll-ups and counters, as the writer does), without they are a backlog the writer has not seen."""
    engine = open_engine(target)
    engine.ensure()
    insert_raw(engine, records)
    if rollups:
        catch_up(engine)
    return engine


def count(target: Path | str, sql: str = "SELECT count(*) FROM calls", params: tuple = ()) -> int:
    """One number from ``target``: read-only for a file (never migrates it), through the engine for a URL."""
    if is_postgres_url(target):
        from llm_monitor_mw.store.engine.postgres import PgConnection, PostgresEngine

        conn = PgConnection(PostgresEngine(str(target)))
        try:
            return conn.execute(sql, params).fetchone()[0]
        finally:
            conn.close()
    import sqlite3

    lite = sqlite3.connect(target)
    try:
        return lite.execute(sql, params).fetchone()[0]
    finally:
        lite.close()


def rows(target: Path | str, sql: str, params: tuple = ()) -> list[tuple]:
    """All rows of ``sql`` from ``target`` (as :func:`count` reads), as tuples."""
    if is_postgres_url(target):
        from llm_monitor_mw.store.engine.postgres import PgConnection, PostgresEngine

        conn = PgConnection(PostgresEngine(str(target)))
        try:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()
    import sqlite3

    lite = sqlite3.connect(target)
    try:
        return [tuple(r) for r in lite.execute(sql, params).fetchall()]
    finally:
        lite.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schema_v1_database(path: Path) -> None:
    """A database as the first schema version wrote it, holding one call."""
    old = sqlite_utils.Database(path)
    MIGRATIONS[0](old)
    old.conn.execute("PRAGMA user_version = 1")
    old.conn.execute("INSERT INTO calls (started_at, provider, operation) VALUES (?, 'openai', 'chat')", (NOW,))
    old.conn.commit()
    old.conn.close()
