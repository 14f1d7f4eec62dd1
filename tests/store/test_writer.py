"""The writer: batching, flush, bounded queue with counted drops, exit flush, several processes on one file."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import Database, Writer
from llm_monitor_mw.store.schema import SCHEMA_VERSION


def make_record(i: int = 0, **kw: object) -> CallRecord:
    return CallRecord(started_at=1_700_000_000 + i, provider="openai", operation="chat", endpoint="/v1/x", **kw)  # type: ignore[arg-type]


def count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]


def test_flush_writes_everything_queued(tmp_path: Path) -> None:
    writer = Writer(Database(tmp_path / "w.db"), lambda r: r, interval=10)  # only flush() wakes it
    for i in range(2500):
        assert writer.submit(make_record(i, input_tokens=i))
    assert writer.flush(timeout=10)
    assert count(tmp_path / "w.db") == 2500
    assert writer.stats().written == 2500 and writer.stats().queued == 0
    writer.close()


def test_values_round_trip(tmp_path: Path) -> None:
    db = Database(tmp_path / "w.db")
    writer = Writer(db, lambda r: r)
    writer.submit(make_record(tags={"user": "alice"}, input_tokens=0, output_tokens=None, streamed=True))
    writer.flush(5)
    row = db.connect().execute("SELECT tags, input_tokens, output_tokens, streamed, ok FROM calls").fetchone()
    assert row == ('{"user":"alice"}', 0, None, 1, 0)  # zero stays zero, unknown stays NULL; no status -> not ok
    writer.close()


def test_overflow_drops_and_counts_never_blocks(tmp_path: Path) -> None:
    gate = threading.Event()

    def slow_prepare(r: CallRecord) -> CallRecord:
        gate.wait(10)
        return r

    writer = Writer(Database(tmp_path / "w.db"), slow_prepare, max_queue=10, interval=0.01)
    accepted = sum(writer.submit(make_record(i)) for i in range(100))
    assert writer.stats().dropped == 100 - accepted
    assert 10 <= accepted <= 11  # the queue bound (+1 the writer may already hold)
    gate.set()
    writer.flush(10)
    assert count(tmp_path / "w.db") == accepted
    writer.close()


def test_prepare_errors_are_counted_not_fatal(tmp_path: Path) -> None:
    def prepare(r: CallRecord) -> CallRecord:
        if r.started_at % 2:
            raise ValueError("bad")
        return r

    writer = Writer(Database(tmp_path / "w.db"), prepare)
    for i in range(10):
        writer.submit(make_record(i))
    writer.flush(5)
    assert writer.stats().failed == 5 and count(tmp_path / "w.db") == 5
    writer.close()


def test_flush_at_interpreter_exit(tmp_path: Path) -> None:
    db = tmp_path / "exit.db"
    code = textwrap.dedent(f"""
        from llm_monitor_mw.record import CallRecord
        from llm_monitor_mw.store import Database, Writer
        w = Writer(Database({str(db)!r}), lambda r: r, interval=60)
        for i in range(1234):
            w.submit(CallRecord(started_at=i, provider="p", operation="chat", endpoint="/"))
        # no flush(): the atexit hook must write them
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert count(db) == 1234


def _worker(path: str, n: int, start: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    writer = Writer(Database(path), lambda r: r, batch_size=50, interval=0.001)
    start.wait()
    for i in range(n):
        writer.submit(make_record(i))
        if i % 100 == 0:
            writer.flush()
    writer.close()


def test_several_processes_one_file_no_lost_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "multi.db")
    Database(path).ensure()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(path, 2000, start)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert count(Path(path)) == 8000


def test_fork_after_use_starts_a_fresh_writer(tmp_path: Path) -> None:
    """gunicorn --preload: the Monitor is built in the master, then workers fork."""
    if not hasattr(__import__("os"), "fork"):
        pytest.skip("no fork")
    path = str(tmp_path / "fork.db")
    writer = Writer(Database(path), lambda r: r)
    writer.submit(make_record(0))
    writer.flush(5)
    ctx = multiprocessing.get_context("fork")

    def child() -> None:
        for i in range(100):
            writer.submit(make_record(i))
        writer.flush(10)

    procs = [ctx.Process(target=child) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert count(Path(path)) == 301
    writer.close()


def test_schema_is_versioned(tmp_path: Path) -> None:
    db = Database(tmp_path / "v.db").connect()
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index_names = {i.name for i in db["calls"].indexes}  # type: ignore[union-attr]
    assert {"idx_calls_started_at", "idx_calls_provider_model", "idx_calls_model"} <= index_names


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(RuntimeError, match="newer than this llm-monitor-mw"):
        Database(path).ensure()


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        Database(path).ensure()


def test_busy_database_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    db = Database(path)
    db.ensure()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock

    def release() -> None:
        import time

        time.sleep(0.5)
        blocker.execute("COMMIT")

    threading.Thread(target=release).start()
    writer = Writer(Database(path), lambda r: r)
    writer.submit(make_record())
    assert writer.flush(timeout=20)
    assert writer.stats().written == 1 and writer.stats().failed == 0
    writer.close()
