"""``llm-monitor check``: a health report of a database file, read-only, with a failing status when it is corrupt."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from llm_monitor_mw.store.schema import SCHEMA_VERSION

from .helpers import HOUR, NOW, count, record, run, schema_v1_database, seed


def _fields(stdout: str) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in stdout.splitlines()}


def test_healthy_database_report(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    now = time.time()
    seed(db, [record(now - 3 * HOUR), record(now - 2 * HOUR), record(now - 60)])
    result = run(cli, "check", db)
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert fields["file"] == str(db.resolve())
    assert fields["status"] == "healthy"
    assert fields["schema version"] == str(SCHEMA_VERSION)
    assert fields["calls"] == "3"
    assert fields["last call"].endswith("(1 min ago)")
    assert fields["first call"].endswith("(3 h ago)")
    assert fields["size"].endswith("free pages)") and fields["WAL"].endswith("(journal mode wal)")
    assert fields["integrity"] == "ok (quick_check)"


def test_json_report(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, [record(NOW - 10), record(NOW - 5)])
    result = run(cli, "check", db, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True and report["integrity"] == ["ok"]
    assert report["calls"] == 2 and report["schema_version"] == SCHEMA_VERSION
    assert report["size_bytes"] == db.stat().st_size and report["last_call_at"].endswith("Z")


def test_empty_database_has_no_last_call(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, [])
    result = run(cli, "check", db)
    assert result.returncode == 0 and _fields(result.stdout)["last call"] == "never"


def test_older_schema_is_reported_and_left_as_it_is(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    schema_v1_database(db)
    result = run(cli, "check", db)
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["schema version"].startswith(f"1 (this package writes {SCHEMA_VERSION};")
    assert count(db, "PRAGMA user_version") == 1  # check opened it read-only: no migration


def test_corrupt_data_pages_fail_the_integrity_check(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, [record(NOW - i, error="x" * 200) for i in range(3000)], rollups=False).close()
    pages = db.stat().st_size // 4096
    data = bytearray(db.read_bytes())
    for page in range(pages // 2, pages // 2 + 3):
        data[page * 4096 + 8 : (page + 1) * 4096] = bytes(range(256)) * 15 + bytes(248)
    db.write_bytes(bytes(data))
    result = run(cli, "check", db)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"llm-monitor: error: {db}: integrity check failed"
    fields = _fields(result.stdout)
    assert fields["status"] == "UNHEALTHY" and fields["integrity"].startswith("FAILED: ")


def test_check_does_not_block_or_change_a_database_in_use(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, [record(NOW)])
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO calls (started_at, provider, operation) VALUES (?, 'openai', 'chat')", (NOW,))
    result = run(cli, "check", db, timeout=30)  # a writer holds the lock: a WAL reader still answers
    writer.execute("COMMIT")
    writer.close()
    assert result.returncode == 0 and _fields(result.stdout)["calls"] == "1"
