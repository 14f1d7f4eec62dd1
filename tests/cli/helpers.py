"""Helpers for the CLI tests: running ``llm-monitor`` as a subprocess, seeded databases."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import sqlite_utils

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import Database, analytics
from llm_monitor_mw.store.schema import MIGRATIONS
from llm_monitor_mw.store.writer import insert_records

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


def seed(path: Path, records: Iterable[CallRecord], *, rollups: bool = True) -> Database:
    """A database at ``path`` holding ``records`` (and, with ``rollups``, the dashboard's roll-ups of them)."""
    db = Database(path)
    insert_records(db, list(records))
    if rollups:
        analytics.ensure(db)
    return db


def count(path: Path, sql: str = "SELECT count(*) FROM calls", params: tuple = ()) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


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
