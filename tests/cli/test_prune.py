"""``llm-monitor prune``: exact rows left, roll-ups pruned with them, nothing newer touched, dry run, VACUUM."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.writer import insert_records

from .helpers import DAY, HOUR, NOW, count, record, run, seed


def _db(path: Path) -> None:
    """One call per hour for 40 days back from NOW, oldest first (ids grow with time, as they do), rolled up."""
    hours = reversed(range(40 * 24))
    seed(path, [record(NOW - i * HOUR, user=f"u{i % 4}", tags={"k": str(i % 3)}) for i in hours]).close()


def test_prune_keeps_exactly_the_younger_calls(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _db(db)
    conn = sqlite3.connect(db)
    young = conn.execute("SELECT * FROM calls WHERE started_at > ? ORDER BY id", (NOW - 30 * DAY,)).fetchall()
    young_hours = conn.execute("SELECT * FROM rollup_calls_hour WHERE ts > ? ORDER BY ts", (NOW - 30 * DAY,)).fetchall()
    conn.close()
    assert len(young) == 30 * 24  # the call at exactly NOW - 30d is older than the cutoff a moment later

    result = run(cli, "prune", db, "--older-than", "30d")

    assert result.returncode == 0, result.stderr
    match = re.match(
        r"deleted 240 calls that started before (\S+) \(older than 30d\) and ([\d,]+) roll-up rows in [\d.]+ s"
        r" \([\d,]+ transactions, longest write lock \d+ ms\)\n$",
        result.stdout,
    )
    assert match, result.stdout
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM calls ORDER BY id").fetchall() == young
    assert conn.execute("SELECT * FROM rollup_calls_hour WHERE ts > ? ORDER BY ts", (NOW - 30 * DAY,)).fetchall() == (
        young_hours
    )
    oldest_hour = conn.execute("SELECT min(ts) FROM rollup_calls_hour").fetchone()[0]
    oldest_day = conn.execute("SELECT min(ts) FROM rollup_dims_day").fetchone()[0]
    conn.close()
    cutoff = NOW - 30 * DAY
    # the bucket holding the cutoff (a moment after `cutoff`, when the command ran) is kept, older ones are gone
    assert cutoff - 2 * HOUR < oldest_hour <= cutoff + 60
    assert cutoff - DAY < oldest_day <= cutoff + 60


def test_the_newest_call_stays_so_ids_are_never_reused(cli: Path, tmp_path: Path) -> None:
    """An emptied table would hand out ids the roll-up and /metrics cursors have passed: those calls would be lost."""
    db = tmp_path / "m.db"
    seed(db, [record(NOW - (50 - i) * DAY) for i in range(5)]).close()
    result = run(cli, "prune", db, "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 4 calls")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id FROM calls").fetchall() == [(5,)]
    conn.close()
    second = open_engine(db)
    insert_records(second, [record(NOW)])  # inserted and projected, as the writer does
    second.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT max(id) FROM calls").fetchone()[0] == 6
    assert conn.execute("SELECT sum(requests) FROM rollup_calls_hour WHERE ts > ?", (NOW - DAY,)).fetchone()[0] == 1
    conn.close()


def test_dry_run_changes_nothing(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _db(db)
    before = db.read_bytes()
    result = run(cli, "prune", db, "--older-than", "10d", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dry run: would delete 720 calls that started before ")
    assert db.read_bytes() == before and count(db) == 40 * 24


def test_vacuum_gives_the_space_back(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    now = time.time()
    seed(db, [record(now - i * 60 - 30, error="e" * 400) for i in reversed(range(5000))]).close()
    size = db.stat().st_size
    result = run(cli, "prune", db, "--older-than", "1h", "--vacuum")
    assert result.returncode == 0, result.stderr
    assert "vacuumed in" in result.stdout
    assert count(db) == 60 and db.stat().st_size < size / 10
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def test_nothing_to_prune(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, [record(NOW)])
    result = run(cli, "prune", db, "--older-than", "2w")
    assert result.returncode == 0 and result.stdout.startswith("deleted 0 calls") and count(db) == 1
