"""The dashboard never starves the host: its work runs on a bounded gate of its own (never anyio's default thread
pool, which the host's sync endpoints use), and a saturated gate answers 503 with Retry-After after a short wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.analytics import Analytics
from llm_monitor_mw.web.gate import Gate, default_capacity
from tests.seed import insert

NOW = time.time()
DASHBOARD = ["/", "/requests", "/requests.csv", "/requests.json", "/costs", "/errors", "/alerts", "/api/requests"]


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "gate.db")
    records = [
        CallRecord(
            started_at=NOW - 60 * i,
            provider="openai",
            operation="chat",
            endpoint="/v1/chat/completions",
            response_model="gpt-4o-mini",
            status_code=200,
            input_tokens=10,
            output_tokens=5,
            duration_ms=50.0,
        )
        for i in range(5)
    ]
    insert(mon, records)
    yield mon
    mon.close()


class Blocker:
    """``Analytics.summary`` (our own code: ``api/summary`` calls it) held until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()
        original: Callable[..., Any] = Analytics.summary

        def summary(analytics: Analytics, *args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            assert self.go.wait(10), "never released"
            return original(analytics, *args, **kwargs)

        monkeypatch.setattr(Analytics, "summary", summary)

    def release(self) -> None:
        self.go.set()

    async def wait_entered(self) -> None:
        with anyio.fail_after(5):
            while not self.entered.is_set():
                await anyio.sleep(0.005)


def run(fn: Callable[[], Any]) -> Any:
    return anyio.run(fn)


def test_saturated_gate_answers_503_with_retry_after_then_recovers(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = Blocker(monkeypatch)
    app = monitor.asgi_app(concurrency=1, queue_timeout=0.2)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
            anyio.create_task_group() as tg,
        ):
            held: dict[str, httpx.Response] = {}

            async def hold() -> None:
                held["summary"] = await client.get("/api/summary")

            tg.start_soon(hold)
            await blocker.wait_entered()
            # the one slot is taken: anyio's default limiter (the host's pool) lends nothing to the dashboard
            assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0

            start = time.perf_counter()
            busy = [await client.get(path) for path in DASHBOARD]
            for path, response in zip(DASHBOARD, busy, strict=True):
                assert response.status_code == 503, (path, response.status_code)
                assert response.headers["retry-after"] == "1" and response.headers["cache-control"] == "no-store"
                if path.startswith("/api/") or path.endswith(".json"):
                    assert response.json()["error"]
                else:
                    assert response.headers["content-type"].startswith("text/html") and "busy" in response.text
                assert response.headers["x-content-type-options"] == "nosniff"  # still inside the security headers
            assert time.perf_counter() - start < len(DASHBOARD) * 0.2 + 2  # each waited about queue_timeout

            # scrapes and health probes have their own slots: a busy dashboard does not fail them
            assert (await client.get("/metrics")).status_code == 200
            assert (await client.get("/health")).status_code == 200

            blocker.release()
        assert held["summary"].status_code == 200 and held["summary"].json()["requests"] == 5
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for path in DASHBOARD:
                assert (await client.get(path)).status_code == 200, path

    run(scenario)


def test_waiters_are_bounded_and_served_in_turn(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every slot taken, up to ``max_waiting`` requests queue (and are served once a slot frees); the rest
    get 503 at once, without waiting out ``queue_timeout``."""
    blocker = Blocker(monkeypatch)
    app = monitor.asgi_app(concurrency=1, queue_timeout=30)
    max_waiting = 8  # 8 x concurrency

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        results: list[tuple[int, float]] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def get(path: str) -> None:
                start = time.perf_counter()
                response = await client.get(path)
                results.append((response.status_code, time.perf_counter() - start))

            async with anyio.create_task_group() as tg:
                tg.start_soon(get, "/api/summary")
                await blocker.wait_entered()
                for _ in range(max_waiting + 4):
                    tg.start_soon(get, "/api/requests")
                with anyio.fail_after(5):
                    while len(results) < 4:  # the four beyond the queue are refused without waiting
                        await anyio.sleep(0.01)
                assert sorted(status for status, _ in results) == [503] * 4
                assert all(elapsed < 5 for _, elapsed in results)
                blocker.release()
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] * (max_waiting + 1) + [503] * 4

    run(scenario)


def test_limits_are_validated_when_the_app_is_built(monitor: Monitor) -> None:
    for bad in ({"concurrency": 0}, {"concurrency": 1.5}, {"concurrency": True}, {"queue_timeout": -1}):
        with pytest.raises(ValueError):
            monitor.asgi_app(**bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            monitor.wsgi_app(**bad)  # type: ignore[arg-type]


def test_default_capacity_follows_the_machine() -> None:
    assert default_capacity() >= 2
    gate = Gate()
    assert gate.capacity == default_capacity() and gate.max_waiting == 8 * gate.capacity
