"""The writer on a bad day: one unstorable record among good ones, the database file deleted or replaced while
open, exit with records queued and no thread, kill -9 mid-write, a full disk."""

from __future__ import annotations

import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import Database, Writer
from llm_monitor_mw.store.analytics import Analytics
from llm_monitor_mw.store.queries import Filters
from tests.seed import insert


def make_record(i: int = 0, **kw: object) -> CallRecord:
    fields: dict[str, object] = {"started_at": 1_700_000_000 + i, "provider": "openai", "operation": "chat"}
    fields.update(kw)
    return CallRecord(endpoint="/v1/x", **fields)  # type: ignore[arg-type]


def rows(path: Path, sql: str = "SELECT count(*) FROM calls") -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def count(path: Path) -> int:
    return int(rows(path)[0][0])  # type: ignore[call-overload]


# ---- one record never takes another with it -----------------------------------------------------------------------


def test_one_unstorable_record_never_takes_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = Writer(Database(path), lambda r: r, interval=10)  # one batch: only flush() wakes the thread
    writer.start()
    for i in range(100):
        writer.submit(make_record(i, input_tokens=10))
    writer.submit(make_record(100, input_tokens=10**20, output_tokens=5, call_id="huge"))
    writer.submit(make_record(101, cost_usd=math.inf, duration_ms=math.nan, output_tokens=7, call_id="inf"))
    for i in range(102, 202):
        writer.submit(make_record(i, input_tokens=10))
    assert writer.flush(10)
    assert count(path) == 202
    assert writer.stats().written == 202 and writer.stats().failed == 0
    columns = "input_tokens, output_tokens, cost_usd, duration_ms, error"
    huge, inf = (rows(path, f"SELECT {columns} FROM calls WHERE call_id = '{c}'")[0] for c in ("huge", "inf"))
    assert huge[:2] == (None, 5) and "input_tokens" in str(huge[4])  # the field is NULL and named; the rest kept
    assert inf[:4] == (None, 7, None, None) and "cost_usd" in str(inf[4])
    assert rows(path, "SELECT total(input_tokens) FROM calls")[0][0] == 200 * 10
    writer.close()


def test_unbindable_values_are_nulled_and_noted_and_the_hopeless_counted(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = Writer(Database(path), lambda r: r, interval=10)
    writer.start()
    writer.submit(make_record(0, call_id="a"))
    writer.submit(make_record(1, call_id="dec", request_model=Decimal("1.5"), error="upstream said no"))
    writer.submit(make_record(2, call_id="surrogate", response_content="half a pair: \ud800"))
    writer.submit(make_record(3, call_id="status", status_code="200"))  # type: ignore[arg-type] # `ok` compares it
    writer.submit(make_record(4, provider=None))  # NOT NULL: cannot be stored even cleaned
    writer.submit(make_record(5, call_id="z", ratelimit_remaining_tokens=-(2**64)))
    assert writer.flush(10)
    stored = dict(rows(path, "SELECT call_id, error FROM calls"))  # type: ignore[arg-type]
    assert set(stored) == {"a", "dec", "surrogate", "status", "z"}
    assert stored["a"] is None
    assert str(stored["dec"]).startswith("upstream said no; ") and "request_model" in str(stored["dec"])
    assert "response_content" in str(stored["surrogate"])
    assert "ok" in str(stored["status"]) and "ratelimit_remaining_tokens" in str(stored["z"])
    assert writer.stats().written == 5 and writer.stats().failed == 1
    writer.close()


# ---- a deleted or replaced file is noticed and reopened ----------------------------------------------------------


def _remove(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)


def test_deleted_file_is_recreated_and_later_rows_are_on_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gone.db"
    db = Database(path, check_interval=0)
    writer = Writer(db, lambda r: r, interval=10)
    writer.start()
    for i in range(10):
        writer.submit(make_record(i))
    assert writer.flush(10) and count(path) == 10
    assert db.connect().execute("SELECT count(*) FROM calls").fetchone()[0] == 10  # a read connection too
    _remove(path)
    with caplog.at_level(logging.WARNING, "llm_monitor_mw"):
        for i in range(10, 25):
            writer.submit(make_record(i))
        assert writer.flush(10)
        # the reading thread notices too: it reads the new file, not the deleted one
        assert db.connect().execute("SELECT count(*) FROM calls").fetchone()[0] == 15
    assert count(path) == 15  # the later rows, in a new, migrated file
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    warnings = [r for r in caplog.records if "deleted while open" in r.getMessage()]
    assert len(warnings) == 1  # once, though two threads reopened
    assert db.reopened == 2
    writer.close()


def test_replaced_file_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    writer = Writer(Database(path, check_interval=0), lambda r: r, interval=10)
    writer.start()
    for i in range(10):
        writer.submit(make_record(i, call_id="old"))
    assert writer.flush(10)
    restored = tmp_path / "restored.db"  # e.g. a backup put back while the app runs
    other = Writer(Database(restored), lambda r: r)
    other.start()
    for i in range(3):
        other.submit(make_record(i, call_id="restored"))
    other.close()  # the writer thread closes its connection: the file is whole, without a -wal
    assert not Path(f"{restored}-wal").exists()
    os.replace(restored, path)
    for i in range(10, 20):
        writer.submit(make_record(i, call_id="new"))
    assert writer.flush(10)
    assert dict(rows(path, "SELECT call_id, count(*) FROM calls GROUP BY 1")) == {"restored": 3, "new": 10}  # type: ignore[arg-type]
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    writer.close()


def test_monitor_notices_within_its_check_interval(tmp_path: Path) -> None:
    """Through the public face, with the default once-per-second check."""
    path = tmp_path / "m.db"
    with Monitor(path) as monitor:
        insert(monitor, [make_record(i) for i in range(5)])
        analytics = Analytics(monitor.db, use_rollups=False)
        everything = Filters(since=0, until=2e9)
        assert analytics.count(everything) == 5
        _remove(path)
        time.sleep(1.1)
        insert(monitor, [make_record(i) for i in range(7)])
        assert count(path) == 7
        assert analytics.count(everything) == 7


# ---- exit ---------------------------------------------------------------------------------------------------------


def _exit_script(db: Path, body: str) -> str:
    """A script that writes ``body``'s records, and at exit (after the writers' flush) reports the threads left."""
    return textwrap.dedent(f"""
        import atexit, threading
        started = []  # threads started during the exit, by name
        def watch():
            start = threading.Thread.start
            def recording(self):
                started.append(self.name)
                start(self)
            threading.Thread.start = recording
        # registered first, so it runs after llm_monitor_mw's own exit flush
        atexit.register(lambda: print("started at exit:", started))
        from llm_monitor_mw.record import CallRecord
        from llm_monitor_mw.store import Database, Writer
        from llm_monitor_mw.store.writer import before_exit_flush
        db = Database({str(db)!r})
        def rec(i):
            return CallRecord(started_at=i, provider="p", operation="chat", endpoint="/")
    """) + textwrap.dedent(body)


def test_exit_drains_inline_when_no_thread_ever_started(tmp_path: Path) -> None:
    db = tmp_path / "exit.db"
    body = """
        w = Writer(db, lambda r: r, interval=60)
        for i in range(1500):
            w.submit(rec(i))  # as a finaliser would: submit() never starts a thread
        # an exit hook that finishes abandoned streams submits more, still with no thread
        before_exit_flush(lambda: [w.submit(rec(i)) for i in range(1500, 1600)])
        before_exit_flush(watch)
    """
    done = subprocess.run([sys.executable, "-c", _exit_script(db, body)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert count(db) == 1600
    assert "started at exit: []" in done.stdout  # written on the exiting thread: no thread was started


def test_exit_with_a_running_thread_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "exit.db"
    body = """
        w = Writer(db, lambda r: r, interval=60)
        w.start()
        for i in range(3000):
            w.submit(rec(i))
    """
    done = subprocess.run([sys.executable, "-c", _exit_script(db, body)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert count(db) == 3000


def test_exit_is_bounded_when_the_database_stays_locked(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    Database(db).ensure()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock for the whole exit
    try:
        body = """
            w = Writer(db, lambda r: r, interval=60)
            for i in range(10):
                w.submit(rec(i))
        """
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _exit_script(db, body)], capture_output=True, text=True, timeout=60
        )
        elapsed = time.monotonic() - start
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert done.returncode == 0, done.stderr
    assert elapsed < 12  # the exit timeout is 5 s; SQLite's busy wait is cut to what is left of it
    assert "could not write 10 call record(s)" in done.stderr
    assert count(db) == 0


# ---- kill -9 and a full disk --------------------------------------------------------------------------------------


def test_integrity_after_kill_9_mid_write(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    code = textwrap.dedent(f"""
        import itertools
        from llm_monitor_mw.record import CallRecord
        from llm_monitor_mw.store import Database, Writer
        w = Writer(Database({str(db)!r}), lambda r: r, batch_size=200, interval=0.001)
        w.start()
        for i in itertools.count():
            w.submit(CallRecord(started_at=i, provider="p", operation="chat", endpoint="/", request_content="x" * 500))
            if i % 200 == 0:
                w.flush()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                if count(db) >= 2000:
                    break
            except sqlite3.Error:
                pass  # not created yet
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    before = count(db)
    assert before >= 2000
    writer = Writer(Database(db), lambda r: r)  # and the file takes more rows
    writer.start()
    writer.submit(make_record())
    assert writer.flush(10)
    assert count(db) == before + 1
    writer.close()


def test_full_disk_counts_failures_and_recovers(tmp_path: Path) -> None:
    """SQLITE_FULL without root tricks: ``PRAGMA max_page_count`` on the writer thread's own connection (set from
    ``prepare``, which runs on that thread) caps the file at its current size, then is raised again."""
    path = tmp_path / "full.db"
    db = Database(path)
    limit: list[int] = []

    def prepare(r: CallRecord) -> CallRecord:
        if limit:
            db.connect().execute(f"PRAGMA max_page_count = {limit.pop()}")
        return r

    writer = Writer(db, prepare, interval=10)
    writer.start()
    for i in range(100):
        writer.submit(make_record(i))
    assert writer.flush(10)
    limit.append(rows(path, "PRAGMA page_count")[0][0])  # type: ignore[arg-type]
    for i in range(1500):
        writer.submit(make_record(i, request_content="x" * 4000))  # each needs new pages
    assert writer.flush(10)
    assert writer.stats().failed == 1500 and count(path) == 100
    limit.append(2**31)
    for i in range(100):
        writer.submit(make_record(i))
    assert writer.flush(10)
    assert count(path) == 200 and writer.stats().written == 200 and writer.stats().failed == 1500
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    writer.close()
