"""``GET /health``: 200 while this process can record calls, 503 when the file or the writer is in trouble."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor, __version__
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.probe import check_connection
from llm_monitor_mw.web import health as health_module
from tests.ops.helpers import free_port
from tests.seed import insert


def call() -> CallRecord:
    return CallRecord(time.time(), "openai", "chat", "/v1/chat/completions", request_model="m", status_code=200)


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "health.db", flush_interval=0.05)
    yield mon
    mon.close()


def health(monitor: Monitor, **kw: Any) -> tuple[int, dict[str, Any]]:
    response = TestClient(monitor.asgi_app(**kw)).get("/health")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()


def test_a_fresh_monitor_is_healthy(monitor: Monitor) -> None:
    status, body = health(monitor)
    assert status == 200
    assert body == {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "database": {
            "reachable": True,
            "writable": True,
            "busy": False,
            "error": None,
            "read_path_ok": True,
            "read_path_error": None,
        },
        "writer": {
            "failing": False,
            "queue_depth": 0,
            "queue_limit": 100_000,
            "written": 0,
            "dropped": 0,
            "failed_writes": 0,
            "internal_errors": 0,
            "last_write_at": None,
        },
        "problems": [],
    }


def test_reports_writes(monitor: Monitor) -> None:
    insert(monitor, [call(), call()])
    status, body = health(monitor)
    assert status == 200
    assert body["writer"]["written"] == 2
    assert body["writer"]["last_write_at"].endswith("Z")


def test_a_deleted_database_file_is_unhealthy(monitor: Monitor) -> None:
    app = TestClient(monitor.asgi_app())
    insert(monitor, [call()])
    assert app.get("/health").status_code == 200
    for suffix in ("", "-wal", "-shm"):
        Path(monitor.path + suffix).unlink(missing_ok=True)
    insert(monitor, [call()])  # the writer's open connection still "writes" into the unlinked file
    response = app.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"]["reachable"] is False and "cannot open" in body["database"]["error"]
    assert body["problems"] == ["database unreachable"]
    assert not Path(monitor.path).exists()  # the check did not create a new, empty file


def test_a_file_that_is_not_a_database_is_unhealthy(monitor: Monitor) -> None:
    app = TestClient(monitor.asgi_app())
    assert app.get("/health").status_code == 200
    for suffix in ("-wal", "-shm"):
        Path(monitor.path + suffix).unlink(missing_ok=True)
    Path(monitor.path).write_bytes(b"this is not SQLite" * 500)
    response = app.get("/health")
    assert response.status_code == 503
    assert response.json()["database"]["reachable"] is False


def test_failing_writes_are_unhealthy_until_a_write_succeeds(monitor: Monitor) -> None:
    app = TestClient(monitor.asgi_app())
    monitor.store.engine.ensure()
    trigger = "CREATE TRIGGER no_space BEFORE INSERT ON calls BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    monitor.store.engine.write(lambda conn: conn.execute(trigger))
    insert(monitor, [call()])
    response = app.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["writer"]["failing"] is True and body["writer"]["failed_writes"] == 1
    assert body["database"]["writable"] is True  # the file itself is fine: the writes are what fail
    assert body["problems"] == ["writes are failing"]
    assert app.get("/health").status_code == 503  # still failing: nothing has been written since
    monitor.store.engine.write(lambda conn: conn.execute("DROP TRIGGER no_space"))
    insert(monitor, [call()])
    assert app.get("/health").status_code == 200


def test_a_busy_file_is_healthy_but_a_full_queue_is_not(tmp_path: Path) -> None:
    with Monitor(tmp_path / "busy.db", max_queue=1, flush_interval=0.05) as monitor:
        app = TestClient(monitor.asgi_app())
        assert app.get("/health").status_code == 200
        locker = sqlite3.connect(monitor.path, isolation_level=None, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            response = app.get("/health")
            assert response.status_code == 200
            assert response.json()["database"] == {
                "reachable": True,
                "writable": None,
                "busy": True,
                "error": None,
                "read_path_ok": True,  # WAL: readers are not blocked by a writer
                "read_path_error": None,
            }
            monitor.store.writer.prepare = lambda r: r  # type: ignore[method-assign]
            monitor.store.writer.start()  # as a call beginning does (submit never starts the thread)
            monitor.store.writer.submit(call())
            deadline = time.monotonic() + 10
            while monitor.stats()["queued"] and time.monotonic() < deadline:  # the writer takes it, waits for the lock
                time.sleep(0.01)
            for _ in range(3):  # one queued, the rest dropped
                monitor.store.writer.submit(call())
            response = app.get("/health")
            assert response.status_code == 503
            body = response.json()
            assert body["writer"]["queue_depth"] == 1 and body["writer"]["dropped"] == 2
            assert body["problems"] == ["writer queue full: records are being dropped"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert monitor.flush(30)
        assert app.get("/health").status_code == 200


def test_a_read_only_database_is_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Monitor(tmp_path / "ro.db") as monitor:
        monitor.store.engine.ensure()
        read_only = sqlite3.connect(f"file:{tmp_path / 'ro.db'}?mode=ro", uri=True, isolation_level=None)
        found = check_connection(read_only, close=True)
        assert (found.reachable, found.writable, found.busy) == (True, False, False)
        assert found.error is not None and "readonly" in found.error
        # (as root, file permissions cannot make the file itself read-only: hand the endpoint that finding)
        monkeypatch.setattr(health_module, "probe", lambda db, create=False: found)
        status, body = health(monitor)
    assert status == 503 and body["status"] == "unhealthy"
    assert body["problems"] == ["database not writable"]


def test_provider_checks_are_opt_in_quick_and_never_recorded(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    urls = [
        fake_llm.base_url + "/v1/models",
        f"http://127.0.0.1:{free_port()}/",  # nothing listens
        f"http://127.0.0.1:{silent.getsockname()[1]}/",
    ]
    monitor.instrument_httpx()
    try:
        start = time.monotonic()
        status, body = health(monitor, health_checks=urls)
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert elapsed < 4  # checks run concurrently, each within 2 s
    assert status == 200 and body["status"] == "degraded"
    reachable, refused, hanging = body["providers"]
    assert reachable["reachable"] is True and reachable["status_code"] < 500 and reachable["latency_ms"] >= 0
    assert refused["reachable"] is False and "ConnectError" in refused["error"]
    assert hanging["reachable"] is False and hanging["status_code"] is None
    assert body["problems"] == [f"provider unreachable: {urls[1]}", f"provider unreachable: {urls[2]}"]
    assert monitor.flush(5)
    assert monitor.store.engine.connect().conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


def test_provider_urls_are_checked_when_building_the_app(monitor: Monitor) -> None:
    with pytest.raises(TypeError):
        monitor.asgi_app(health_checks="https://api.openai.com")  # type: ignore[arg-type]
    for bad in (["api.openai.com"], ["ftp://example.com/"], ["https://"]):
        with pytest.raises(ValueError, match="health_checks"):
            monitor.asgi_app(health_checks=bad)
        with pytest.raises(ValueError, match="health_checks"):
            monitor.wsgi_app(health_checks=bad)


def test_a_dropped_roll_up_table_is_degraded_with_the_reason(monitor: Monitor) -> None:
    app = TestClient(monitor.asgi_app(), raise_server_exceptions=False)
    insert(monitor, [call(), call()])
    pages = ("/?range=7d", "/costs?range=7d")
    assert [app.get(page).status_code for page in pages] == [200, 200]
    assert health(monitor)[1]["status"] == "ok"
    monitor.store.engine.write(lambda conn: conn.execute("DROP TABLE rollup_calls_hour"))
    assert all(app.get(page).status_code != 200 for page in pages)  # the dashboard's read path really fails
    status, body = health(monitor)
    reason = "rollup_calls_hour of the last day: no such table: rollup_calls_hour"
    assert status == 200 and body["status"] == "degraded"  # recording still works: see web/health.py
    assert body["database"] == {
        "reachable": True,
        "writable": True,
        "busy": False,
        "error": None,
        "read_path_ok": False,
        "read_path_error": reason,
    }
    assert body["problems"] == [f"dashboard reads failing: {reason}"]
    insert(monitor, [call()])
    assert health(monitor)[1]["writer"]["written"] == 3  # and calls are still recorded


def test_a_corrupt_roll_up_page_is_degraded(monitor: Monitor) -> None:
    app = TestClient(monitor.asgi_app(), raise_server_exceptions=False)
    insert(monitor, [call() for _ in range(20)])
    assert app.get("/api/summary?range=7d").status_code == 200  # builds the roll-ups
    conn = monitor.store.engine.connect().conn
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'rollup_calls_day'").fetchone()[0]
    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # every page is in the main file
    with open(monitor.path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
    status, body = health(monitor)
    assert status == 200 and body["status"] == "degraded"
    assert body["database"]["writable"] is True and body["database"]["read_path_ok"] is False
    assert body["database"]["read_path_error"] == "rollup_calls_day: database disk image is malformed"
    assert body["problems"] == ["dashboard reads failing: rollup_calls_day: database disk image is malformed"]


def test_an_unreadable_counter_table_shows_in_health_and_metrics(monitor: Monitor) -> None:
    app = TestClient(monitor.asgi_app())
    insert(monitor, [call()])
    assert "llm_monitor_database_up 1.0" in app.get("/metrics").text
    monitor.store.engine.write(lambda conn: conn.execute("DROP TABLE counter_totals"))
    insert(monitor, [call()])
    assert "llm_monitor_database_up 0.0" in app.get("/metrics").text
    status, body = health(monitor)
    assert status == 200 and body["status"] == "degraded"
    assert body["problems"] == ["dashboard reads failing: counter_totals: no such table: counter_totals"]
