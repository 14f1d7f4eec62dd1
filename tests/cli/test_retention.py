"""Retention in the store, on both engines: ``prune`` (exact rows, roll-ups, other tables untouched, only projected
calls, dry run == real run, one pruner at a time, short transactions) and the thread behind
``Monitor(retention_days=...)``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.store.engine import Engine, open_engine
from llm_monitor_mw.store.projections import catch_up
from llm_monitor_mw.store.retention import LEASE, Retention, prune, rollup_tables

from .helpers import DAY, HOUR, NOW, count, insert_raw, record, rows, seed

CUTOFF = (NOW // HOUR) * HOUR - 10 * DAY + 1800  # half past an hour: that hour's bucket straddles the cutoff


def _hourly(target: str | Path, hours: int, *, rollups: bool = True) -> Engine:
    """One call every 20 minutes for ``hours`` hours back from now, with a few users, tags and failures."""
    return seed(
        target,
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
        rollups=rollups,
    )


def _table(target: str, table: str, where: str = "1 = 1", params: tuple = ()) -> list[tuple]:
    return sorted(rows(target, f'SELECT * FROM "{table}" WHERE {where}', params), key=repr)


def test_prune_deletes_exactly_the_old_calls_and_buckets(store_target: str) -> None:
    engine = _hourly(store_target, 15 * 24)
    tables = rollup_tables(engine)
    assert {t for t, _ in tables} >= {"rollup_calls_hour", "rollup_calls_day", "rollup_dims_hour", "rollup_dims_day"}
    young_calls = rows(store_target, "SELECT * FROM calls WHERE started_at >= ? ORDER BY id", (CUTOFF,))
    old_calls = count(store_target, "SELECT count(*) FROM calls WHERE started_at < ?", (CUTOFF,))
    kept = {t: _table(store_target, t, "ts > ?", (CUTOFF - grain,)) for t, grain in tables}
    due = sum(count(store_target, f'SELECT count(*) FROM "{t}" WHERE ts <= ?', (CUTOFF - g,)) for t, g in tables)
    assert old_calls == sum(NOW - i * 1200 < CUTOFF for i in range(15 * 24 * 3)) > 350 and due > 100

    result = prune(engine, CUTOFF, batch_size=100)

    assert (result.calls, result.rollup_rows, result.kept) == (old_calls, due, 0)
    assert rows(store_target, "SELECT * FROM calls ORDER BY id") == young_calls
    for table, grain in tables:
        assert count(store_target, f'SELECT count(*) FROM "{table}" WHERE ts <= ?', (CUTOFF - grain,)) == 0, table
        assert _table(store_target, table) == kept[table], table  # straddling and newer buckets untouched
    hour_of_cutoff = CUTOFF - 1800
    assert count(store_target, "SELECT count(*) FROM rollup_calls_hour WHERE ts = ?", (hour_of_cutoff,)) == 1
    assert count(store_target, "SELECT count(*) FROM rollup_calls_day WHERE ts = ?", (CUTOFF - CUTOFF % DAY,)) == 1
    assert result.transactions >= 3  # batches of at most 100, 200, 400 ... calls: several short transactions
    assert 0 < result.longest_lock_s < 5
    assert count(store_target, f"SELECT count(*) FROM rollup_state WHERE name = '{LEASE}'") == 0  # lease released


def test_dry_run_counts_exactly_what_the_real_run_deletes(store_target: str) -> None:
    """Calls and roll-up rows alike, also on a database with a backlog the writer has not projected yet."""
    engine = _hourly(store_target, 12 * 24)
    insert_raw(engine, [record(NOW - 20 * DAY + i) for i in range(30)] + [record(NOW - 60)])  # a backlog
    before = count(store_target)
    dry = prune(engine, CUTOFF, dry_run=True)
    assert count(store_target) == before and dry.dry_run and dry.transactions == 0
    assert dry.kept == 30  # old but not projected: left for later
    real = prune(engine, CUTOFF, batch_size=50)
    assert (dry.calls, dry.rollup_rows, dry.kept) == (real.calls, real.rollup_rows, real.kept)
    assert real.calls > 100 and real.rollup_rows > 50
    assert count(store_target, "SELECT count(*) FROM calls WHERE started_at < ?", (CUTOFF,)) == 30

    catch_up(engine)  # the writer projects the backlog; the next run deletes it, and says so first
    dry = prune(engine, CUTOFF, dry_run=True)
    real = prune(engine, CUTOFF)
    assert (dry.calls, dry.rollup_rows, dry.kept) == (real.calls, real.rollup_rows, real.kept)
    assert (real.calls, real.kept) == (
        30,
        0,
    ) and real.rollup_rows > 0  # the backlog's own (old) buckets, made by the catch-up, go too


def test_only_projected_calls_are_deleted_so_counters_never_lose_one(store_target: str) -> None:
    engine = seed(store_target, [record(NOW - 20 * DAY), record(NOW - 19 * DAY), record(NOW)], rollups=False)
    result = prune(engine, NOW - DAY)
    assert (result.calls, result.kept) == (0, 2) and count(store_target) == 3
    catch_up(engine)
    assert count(store_target, "SELECT sum(requests) FROM counter_totals") == 3
    result = prune(engine, NOW - DAY)
    assert (result.calls, result.kept) == (2, 0) and count(store_target) == 1
    assert count(store_target, "SELECT sum(requests) FROM counter_totals") == 3  # counters never go down


def test_young_call_among_old_ids_is_kept_and_late_old_call_is_deleted(store_target: str) -> None:
    records = [record(NOW - 20 * DAY), record(NOW - 60), record(NOW - 19 * DAY), record(NOW - 30)]
    engine = seed(store_target, records)
    prune(engine, NOW - 10 * DAY)
    assert rows(store_target, "SELECT id, started_at FROM calls ORDER BY id") == [(2, NOW - 60), (4, NOW - 30)]


def test_the_newest_call_stays_whatever_its_age(store_target: str) -> None:
    engine = seed(store_target, [record(NOW - (50 - i) * DAY) for i in range(5)])
    assert prune(engine, NOW - 30 * DAY).calls == 4
    assert rows(store_target, "SELECT id FROM calls") == [(5,)]


def test_other_tables_are_never_touched(store_target: str) -> None:
    engine = _hourly(store_target, 12 * 24)
    old = NOW - 30 * DAY
    for table in ("counters_calls_day", "alert_things", "rollup_notes"):
        engine.write(lambda c, t=table: c.execute(f"CREATE TABLE {t} (ts BIGINT NOT NULL, n INTEGER)"))
        engine.write(lambda c, t=table: c.execute(f"INSERT INTO {t} VALUES (?, 1), (?, 2)", (int(old), int(NOW))))
    state = rows(store_target, "SELECT * FROM rollup_state ORDER BY name")
    counters = _table(store_target, "counter_totals")
    prune(engine, CUTOFF)
    for table in ("counters_calls_day", "alert_things", "rollup_notes"):
        assert count(store_target, f"SELECT count(*) FROM {table}") == 2, table
    assert rows(store_target, "SELECT * FROM rollup_state ORDER BY name") == state
    assert _table(store_target, "counter_totals") == counters


def test_stop_event_ends_a_run_between_batches(store_target: str) -> None:
    engine = _hourly(store_target, 12 * 24)
    stop = threading.Event()
    stop.set()
    result = prune(engine, CUTOFF, batch_size=100, stop=stop)
    assert result.stopped and result.calls <= 100 and result.rollup_rows == 0


def test_one_pruner_at_a_time(store_target: str) -> None:
    """A second pruner (another process or host) finds the lock taken and skips, deleting nothing."""
    engine = _hourly(store_target, 12 * 24)
    first_has_lock = threading.Event()
    release = threading.Event()
    from llm_monitor_mw.store import retention

    class Held(retention._Batches):
        def write(self, fn):  # type: ignore[no-untyped-def]
            first_has_lock.set()
            release.wait(30)
            return super().write(fn)

    results: list[retention.PruneResult] = []
    original = retention._Batches
    retention._Batches = Held  # type: ignore[misc]
    try:
        worker = threading.Thread(target=lambda: results.append(prune(open_engine(store_target), CUTOFF)))
        worker.start()
        assert first_has_lock.wait(30)
    finally:
        retention._Batches = original  # type: ignore[misc]
    try:
        other = open_engine(store_target)  # its own connection, as another process has
        second = prune(other, CUTOFF)
        assert second.skipped and second.calls == 0 and second.rollup_rows == 0
        assert prune(other, CUTOFF, dry_run=True).calls > 0  # a dry run needs no lock
    finally:
        release.set()
        worker.join(60)
    assert results and not results[0].skipped and results[0].calls > 0
    assert not prune(engine, CUTOFF).skipped  # released when done


def test_a_crashed_pruners_lease_expires(tmp_path: Path) -> None:
    """SQLite: the lease row of a pruner that died is free once its time has passed."""
    target = str(tmp_path / "m.db")
    engine = _hourly(target, 12 * 24)
    expired = int(time.time() * 1000) - 1
    engine.write(lambda c: c.execute("INSERT INTO rollup_state (name, last_id) VALUES (?, ?)", (LEASE, expired)))
    assert not prune(engine, CUTOFF).skipped
    alive = int(time.time() * 1000) + 60_000
    engine.write(lambda c: c.execute("INSERT INTO rollup_state (name, last_id) VALUES (?, ?)", (LEASE, alive)))
    assert prune(engine, CUTOFF).skipped


def test_concurrent_writer_waits_little_while_a_large_backlog_is_pruned(store_target: str) -> None:
    """Another writer (its own connection) keeps inserting; its longest wait stays far below the old figures
    (6.3 s / 5.2 s on the issue's machine). The bound is generous (1 s) so the test is not timing-flaky;
    ``benchmarks/retention.py`` holds the real figure."""
    n = 60_000
    engine = seed(store_target, [record(NOW - 20 * DAY + i * 10, route=f"/r{i % 50}") for i in range(n)])
    waits: list[float] = []
    done = threading.Event()

    def write() -> None:
        other = open_engine(store_target)
        batch = [record(time.time()) for _ in range(20)]
        while not done.is_set():
            start = time.perf_counter()
            insert_raw(other, batch)
            waits.append(time.perf_counter() - start)
            time.sleep(0.005)
        other.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.2)
        result = prune(engine, NOW - DAY)
    finally:
        done.set()
        thread.join(30)
    assert result.calls == n and result.transactions > 5  # the writer's rows are newer: no old row is the newest
    assert len(waits) > 10
    assert max(waits) < 1.0, f"writer waited {max(waits) * 1000:.0f} ms"


# ---- the background thread --------------------------------------------------------------------------------------


def test_retention_run_once_does_nothing_when_everything_is_current(store_target: str) -> None:
    engine = seed(store_target, [record(NOW - HOUR)])
    retention = Retention(engine, days=1)
    assert retention.run_once() is None and retention.runs == 1 and count(store_target) == 1


def test_retention_days_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        Monitor(tmp_path / "m.db", retention_days=0)


def test_monitor_prunes_in_the_background_and_close_stops_it(
    store_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store_target, [record(NOW - 3 * DAY), record(NOW - 2 * DAY), record(NOW - HOUR)]).close()
    monkeypatch.setattr(Retention, "first_delay", 0.05)
    monkeypatch.setattr(Retention, "interval", 0.2)
    monitor = Monitor(store_target, retention_days=1.5)
    try:
        assert monitor.store.retention is not None and monitor.store.retention.running
        deadline = time.monotonic() + 20
        while count(store_target) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(store_target) == 1
        runs = monitor.store.retention.runs
        while monitor.store.retention.runs == runs and time.monotonic() < deadline:  # it keeps running
            time.sleep(0.05)
        assert monitor.store.retention.runs > runs and monitor.store.retention.failures == 0
    finally:
        monitor.close()
    assert not monitor.store.retention.running


def test_monitor_without_retention_has_no_thread(tmp_path: Path) -> None:
    with Monitor(tmp_path / "m.db") as monitor:
        assert monitor.store.retention is None
        assert not any(t.name == "llm-monitor-retention" for t in threading.enumerate())
