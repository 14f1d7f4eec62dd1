"""Retention in the store: ``prune`` (exact rows, roll-ups, other tables untouched, short transactions) and the
background thread behind ``Monitor(retention_days=...)``."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.store import Database
from llm_monitor_mw.store.retention import Retention, prune, rollup_tables
from llm_monitor_mw.store.writer import insert_records

from .helpers import DAY, HOUR, NOW, count, record, seed

CUTOFF = (NOW // HOUR) * HOUR - 10 * DAY + 1800  # half past an hour: that hour's bucket straddles the cutoff


def _snapshot(conn: sqlite3.Connection, table: str, where: str, params: tuple) -> list[tuple]:
    return conn.execute(f'SELECT * FROM "{table}" WHERE {where} ORDER BY 1, 2, 3', params).fetchall()


def _hourly(path: Path, hours: int) -> Database:
    """One call every 20 minutes for ``hours`` hours back from now, with a few users, tags and failures."""
    return seed(
        path,
        [
            record(
                NOW - i * 1200,
                user=f"u{i % 3}",
                route="/chat",
                tags={"feature": "a" if i % 2 else "b"},
                status_code=429 if i % 7 == 0 else 200,
                error_type="rate_limit" if i % 7 == 0 else None,
            )
            for i in reversed(range(hours * 3))  # oldest first: ids grow with time
        ],
    )


def test_prune_deletes_exactly_the_old_calls_and_buckets(tmp_path: Path) -> None:
    db = _hourly(tmp_path / "m.db", 15 * 24)
    conn = db.connect().conn
    tables = rollup_tables(conn)
    assert {t for t, _ in tables} >= {"rollup_calls_hour", "rollup_calls_day", "rollup_dims_hour", "rollup_dims_day"}
    young_calls = conn.execute("SELECT * FROM calls WHERE started_at >= ? ORDER BY id", (CUTOFF,)).fetchall()
    old_calls = count(db.path, "SELECT count(*) FROM calls WHERE started_at < ?", (CUTOFF,))
    kept = {t: _snapshot(conn, t, "ts > ?", (CUTOFF - grain,)) for t, grain in tables}
    due = sum(count(db.path, f'SELECT count(*) FROM "{t}" WHERE ts <= ?', (CUTOFF - g,)) for t, g in tables)
    assert old_calls == sum(NOW - i * 1200 < CUTOFF for i in range(15 * 24 * 3)) > 350 and due > 100

    result = prune(db, CUTOFF, batch_size=100)

    assert (result.calls, result.rollup_rows) == (old_calls, due)
    assert conn.execute("SELECT * FROM calls ORDER BY id").fetchall() == young_calls
    for table, grain in tables:
        assert count(db.path, f'SELECT count(*) FROM "{table}" WHERE ts <= ?', (CUTOFF - grain,)) == 0, table
        assert _snapshot(conn, table, "1", ()) == kept[table], table  # straddling and newer buckets untouched
    hour_of_cutoff = CUTOFF - 1800
    assert count(db.path, "SELECT count(*) FROM rollup_calls_hour WHERE ts = ?", (hour_of_cutoff,)) == 1
    assert count(db.path, "SELECT count(*) FROM rollup_calls_day WHERE ts = ?", (CUTOFF - CUTOFF % DAY,)) == 1
    assert result.transactions >= 3  # batches of at most 100, 200, 400 ... calls: several short transactions
    assert 0 < result.longest_lock_s < 5


def test_dry_run_counts_without_deleting(tmp_path: Path) -> None:
    db = _hourly(tmp_path / "m.db", 12 * 24)
    before = count(db.path)
    dry = prune(db, CUTOFF, dry_run=True)
    assert count(db.path) == before and dry.dry_run and dry.transactions == 0
    real = prune(db, CUTOFF)
    assert (dry.calls, dry.rollup_rows) == (real.calls, real.rollup_rows) and real.calls > 0


def test_young_call_among_old_ids_is_kept_and_late_old_call_is_deleted(tmp_path: Path) -> None:
    records = [record(NOW - 20 * DAY), record(NOW - 60), record(NOW - 19 * DAY), record(NOW - 30)]
    db = seed(tmp_path / "m.db", records)
    prune(db, NOW - 10 * DAY)
    assert db.connect().conn.execute("SELECT id, started_at FROM calls").fetchall() == [(2, NOW - 60), (4, NOW - 30)]


def test_other_tables_are_never_touched(tmp_path: Path) -> None:
    db = _hourly(tmp_path / "m.db", 12 * 24)
    conn = db.connect().conn
    old = NOW - 30 * DAY
    for table in ("counters_calls_day", "alert_events", "rollup_notes"):
        conn.execute(f"CREATE TABLE {table} (ts INTEGER NOT NULL, n INTEGER)")
        conn.execute(f"INSERT INTO {table} VALUES (?, 1), (?, 2)", (old, NOW))
    state = conn.execute("SELECT * FROM rollup_state").fetchall()
    prune(db, CUTOFF)
    for table in ("counters_calls_day", "alert_events", "rollup_notes"):
        assert count(db.path, f"SELECT count(*) FROM {table}") == 2, table
    assert conn.execute("SELECT * FROM rollup_state").fetchall() == state


def test_calls_are_counted_before_they_go(tmp_path: Path) -> None:
    """Rows not yet rolled up or counted for /metrics are, before the prune deletes them: counters never go down."""
    db = seed(tmp_path / "m.db", [record(NOW - 20 * DAY), record(NOW - 19 * DAY), record(NOW)], rollups=False)
    result = prune(db, NOW - DAY)
    assert result.calls == 2 and count(db.path) == 1
    assert count(db.path, "SELECT sum(requests) FROM counter_totals") == 3
    assert count(db.path, "SELECT sum(requests) FROM rollup_calls_day") == 1  # old buckets went with their calls


def test_stop_event_ends_a_run_between_batches(tmp_path: Path) -> None:
    db = _hourly(tmp_path / "m.db", 12 * 24)
    stop = threading.Event()
    stop.set()
    result = prune(db, CUTOFF, batch_size=100, stop=stop)
    assert result.stopped and result.calls <= 100 and result.rollup_rows == 0


def test_writers_keep_writing_while_pruning(tmp_path: Path) -> None:
    db = _hourly(tmp_path / "m.db", 15 * 24)
    old = count(db.path, "SELECT count(*) FROM calls WHERE started_at < ?", (CUTOFF,))
    young = count(db.path) - old
    done = threading.Event()
    written: list[int] = []

    def write() -> None:
        other = Database(db.path)
        while not done.is_set():
            insert_records(other, [record(time.time()) for _ in range(20)])
            written.append(20)
            time.sleep(0.005)
        other.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        result = prune(db, CUTOFF, batch_size=200)
    finally:
        done.set()
        thread.join(30)
    assert result.calls == old and len(written) > 0
    assert count(db.path) == young + sum(written)


# ---- the background thread --------------------------------------------------------------------------------------


def test_retention_run_once_does_nothing_when_everything_is_current(tmp_path: Path) -> None:
    db = seed(tmp_path / "m.db", [record(NOW - HOUR)])
    retention = Retention(db, days=1)
    assert retention.run_once() is None and retention.runs == 1 and count(db.path) == 1


def test_retention_days_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        Monitor(tmp_path / "m.db", retention_days=0)


def test_monitor_prunes_in_the_background_and_close_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(tmp_path / "m.db", [record(NOW - 3 * DAY), record(NOW - 2 * DAY), record(NOW - HOUR)])
    monkeypatch.setattr(Retention, "first_delay", 0.05)
    monkeypatch.setattr(Retention, "interval", 0.2)
    monitor = Monitor(tmp_path / "m.db", retention_days=1.5)
    try:
        assert monitor.retention is not None and monitor.retention.running
        deadline = time.monotonic() + 20
        while count(tmp_path / "m.db") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(tmp_path / "m.db") == 1
        runs = monitor.retention.runs
        while monitor.retention.runs == runs and time.monotonic() < deadline:  # it keeps running on its interval
            time.sleep(0.05)
        assert monitor.retention.runs > runs and monitor.retention.failures == 0
    finally:
        monitor.close()
    assert not monitor.retention.running


def test_monitor_without_retention_has_no_thread(tmp_path: Path) -> None:
    with Monitor(tmp_path / "m.db") as monitor:
        assert monitor.retention is None
        assert not any(t.name == "llm-monitor-retention" for t in threading.enumerate())
