"""The app over either engine: every page, the API, ``/metrics`` and ``/health`` answer from the one ``Store``;
the instance name a monitor stamps on its rows; ``llm-monitor serve``'s store-only app."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.hooks import Hooks
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import MAX_INSTANCE_LENGTH, Store, default_instance, open_engine
from llm_monitor_mw.web.app import create_app
from tests.seed import insert

NOW = time.time()


def rec(i: int, **fields: object) -> CallRecord:
    base: dict[str, object] = {
        "started_at": NOW - 60 * i,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "status_code": 200 if i % 5 else 429,
        "error_type": None if i % 5 else "RateLimitError",
        "duration_ms": 100.0 + i,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": 0.001,
        "call_id": f"c{i}",
    }
    base.update(fields)
    return CallRecord(**base)  # type: ignore[arg-type]


GETS = (
    "/",
    "/requests",
    "/costs",
    "/errors",
    "/alerts",
    "/fragments/overview/kpis",
    "/fragments/requests/table",
    "/requests.csv",
    "/requests.json",
    "/api/requests",
    "/api/summary",
    "/api/stats",
    "/metrics",
    "/health",
)


def test_every_route_answers_on_both_engines(store_target: str) -> None:
    with Monitor(store_target, instance="web-1") as monitor:
        insert(monitor, [rec(i) for i in range(20)])
        app = monitor.asgi_app()
        with TestClient(app) as client:
            for path in GETS:
                response = client.get(path)
                assert response.status_code == 200, (path, response.text[:300])
            listed = client.get("/api/requests", params={"limit": 1000}).json()
            assert listed["total"] == 20
            detail = client.get(f"/api/requests/{listed['items'][0]['id']}").json()
            assert detail["call_id"].startswith("c") and detail.get("instance", "web-1") == "web-1"
            assert client.get("/api/summary").json()["requests"] == 20
            assert client.get("/api/stats").json()["written"] == 20
            health = client.get("/health").json()
            assert health["status"] == "ok" and health["writer"]["queue_limit"] == monitor.store.max_queue
            assert 'llm_monitor_written_records_total{pid="' in client.get("/metrics").text
        assert monitor.store.metrics_instance == (None if monitor.store.engine.name == "sqlite" else "web-1")


def test_pages_and_api_share_one_analytics(tmp_path: object) -> None:
    with Monitor(f"{tmp_path}/one.db") as monitor:
        store = monitor.store
        seen = []
        real = store.analytics.summary

        def counting(*args: object, **kwargs: object) -> object:
            seen.append(args)
            return real(*args, **kwargs)  # type: ignore[arg-type]

        store.analytics.summary = counting  # type: ignore[method-assign]
        app = monitor.asgi_app()
        with TestClient(app) as client:
            assert client.get("/api/summary").status_code == 200
        assert len(seen) == 1  # the API read through the store's own Analytics, the one the pages hold


def test_instance_default_and_validation(tmp_path: object) -> None:
    host, _, group = default_instance().rpartition(":")
    assert host and group.isdigit()
    with Monitor(f"{tmp_path}/i.db") as monitor:
        assert monitor.instance == monitor.store.instance == default_instance()
    for bad in ("", "x" * (MAX_INSTANCE_LENGTH + 1), "web\n1", "tab\tname"):
        with pytest.raises(ValueError, match="instance"):
            Monitor(f"{tmp_path}/bad.db", instance=bad)
    with pytest.raises(TypeError):
        Monitor(f"{tmp_path}/bad.db", instance=3)  # type: ignore[arg-type]
    with Monitor(f"{tmp_path}/long.db", instance="é" * MAX_INSTANCE_LENGTH) as monitor:
        assert monitor.store.instance == "é" * MAX_INSTANCE_LENGTH


def test_store_only_app_serves_what_another_process_wrote(store_target: str) -> None:
    with Monitor(store_target, instance="writer-host") as monitor:
        insert(monitor, [rec(i) for i in range(3)])
    hooks = Hooks()
    store = Store(open_engine(store_target), hooks=hooks)
    try:
        app = create_app(store, hooks)
        with TestClient(app) as client:
            assert client.get("/api/requests").json()["total"] == 3
            assert client.get("/alerts").status_code == 200  # an alert manager built over the store on first use
            assert client.get("/api/stats").json()["written"] == 0  # this process wrote nothing
    finally:
        store.close()


def test_a_database_that_is_gone_answers_503_never_500(pg_url: str, pg_server: object) -> None:
    """Pages and the API answer 503 with the reason (and Retry-After) while the database refuses connections."""
    name = pg_url.rsplit("/", 1)[1]
    with Monitor(pg_url, instance="web-1") as monitor:
        insert(monitor, [rec(i) for i in range(3)])
        client = TestClient(monitor.asgi_app())
        assert client.get("/api/summary").status_code == 200
        with pg_server.admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
        try:
            api = client.get("/api/summary?since=24h")
            assert api.status_code == 503, api.text
            assert "database is unavailable" in api.json()["error"]
            assert api.headers["retry-after"] == "5"
            page = client.get("/requests")
            assert page.status_code == 503
            assert page.headers["content-type"].startswith("text/html")
            assert "database is unavailable" in page.text
            assert client.get("/health").status_code == 503
        finally:
            with pg_server.admin() as admin:  # type: ignore[attr-defined]
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        assert client.get("/api/summary").status_code == 200  # reconnected
