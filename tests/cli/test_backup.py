"""``llm-monitor backup``: a consistent, self-contained copy while another process keeps writing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llm_monitor_mw.store.backup import backup

from .helpers import NOW, assert_user_error, count, record, run, seed

BASE = 20_000
TX = 50  # rows per transaction of the writer process


@contextmanager
def writer_process(db: Path) -> Iterator[None]:
    """Another process inserting TX rows per transaction, as fast as it can, until the block ends."""
    code = textwrap.dedent(
        f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(db)!r}, isolation_level=None, timeout=30)
        print("ready", flush=True)
        while True:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO calls (started_at, provider, operation, error) VALUES (?, 'writer', 'chat', ?)",
                [(time.time(), "w" * 300)] * {TX},
            )
            conn.execute("COMMIT")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while count(db) == BASE and time.monotonic() < deadline:
            time.sleep(0.01)
        yield
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    db = tmp_path / "live.db"
    seed(db, [record(NOW - i, error="e" * 300) for i in range(BASE)], rollups=False).close()
    return db


def _assert_consistent_copy(copy: Path, low: int, high: int) -> None:
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        rows, top = conn.execute("SELECT count(*), max(id) FROM calls").fetchone()
    finally:
        conn.close()
    assert low <= rows <= high, (low, rows, high)
    assert rows == top  # no row missing in the middle
    assert (rows - BASE) % TX == 0  # only whole transactions of the writer
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}-journal").exists()


def test_backup_in_small_steps_under_concurrent_writes(big_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    with writer_process(big_db):
        low = count(big_db)
        result = backup(big_db, copy, pages_per_step=8, sleep=0.002)  # hundreds of steps, the writer goes on
        high = count(big_db)
    assert high - low >= 5 * TX, "the writer did not commit during the backup"
    assert result.pages > 500 and result.calls == count(copy)
    _assert_consistent_copy(copy, low, high)


def test_cli_backup_under_concurrent_writes(cli: Path, big_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    with writer_process(big_db):
        low = count(big_db)
        result = run(cli, "backup", big_db, copy)
        high = count(big_db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up {big_db} to {copy}: ") and "(quick_check ok)" in result.stdout
    _assert_consistent_copy(copy, low, high)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".copy.db")] == []  # no temporary file left


def test_existing_destination_needs_force(cli: Path, big_db: Path, tmp_path: Path) -> None:
    dest = tmp_path / "old-backup.db"
    dest.write_text("an older backup")
    assert_user_error(run(cli, "backup", big_db, dest), "already exists", "--force")
    assert dest.read_text() == "an older backup"
    result = run(cli, "backup", big_db, dest, "--force")
    assert result.returncode == 0, result.stderr
    assert count(dest) == BASE


def test_refuses_to_overwrite_the_database_itself(cli: Path, big_db: Path) -> None:
    assert_user_error(run(cli, "backup", big_db, big_db, "--force"), "is the database itself")
    assert count(big_db) == BASE


def test_missing_destination_directory(cli: Path, big_db: Path, tmp_path: Path) -> None:
    assert_user_error(run(cli, "backup", big_db, tmp_path / "nope" / "b.db"), "no such directory")
