"""Who reaches ``/metrics`` and ``/health``: the app's auth, or the bearer token — which opens nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client as WSGIClient

from llm_monitor_mw import BasicAuth, Constraint, Monitor
from tests.ops.helpers import basic, bearer

TOKEN = "scrape-Token_0123456789.~+/="
OTHER_PATHS = ["/", "/api/requests", "/api/stats", "/api/summary", "/api/requests/1", "/static/style.css", "/nope"]
TRICKS = [
    "/metrics/",
    "/Metrics",
    "/METRICS",
    "/metrics/.",
    "/metrics/..",
    "/metrics.",
    "//metrics",
    "/static/../metrics",
    "/api/../metrics",
    "/metrics/../api/requests",
    "/metrics%2f..%2fapi%2frequests",
    "/metrics\x00",
    "/health/",
    "/static/../health",
]


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "access.db")
    yield mon
    mon.close()


def host(app: Any, prefix: str = "/monitoring") -> TestClient:
    return TestClient(Starlette(routes=[Mount(prefix, app=app)]))


def raw_get(app: Any, path: str, headers: dict[str, str], method: str = "GET", root: str = "") -> tuple[int, bytes]:
    """Call the ASGI app with ``path`` exactly as given (no client-side normalisation of dots or slashes)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root + path,
        "raw_path": (root + path).encode("latin-1"),
        "root_path": root,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_metrics_and_health_sit_behind_the_app_auth(monitor: Monitor) -> None:
    client = host(monitor.asgi_app(auth=BasicAuth("admin", "s3cret")))
    for path in ("/monitoring/metrics", "/monitoring/health"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=basic("admin", "wrong")).status_code == 401
        assert client.get(path, headers=bearer("s3cret")).status_code == 401  # no token configured
        assert client.get(path, headers=basic("admin", "s3cret")).status_code == 200
    assert "llm_monitor_database_up 1.0" in client.get("/monitoring/metrics", headers=basic("admin", "s3cret")).text


@pytest.mark.parametrize("auth", [BasicAuth("admin", "s3cret"), Constraint(lambda request: False, status_code=403)])
def test_the_token_opens_metrics_and_health_only(monitor: Monitor, auth: Any) -> None:
    client = host(monitor.asgi_app(auth=auth, metrics_token=TOKEN))
    denied = 401 if isinstance(auth, BasicAuth) else 403
    metrics = client.get("/monitoring/metrics", headers=bearer(TOKEN))
    assert metrics.status_code == 200 and "# TYPE llm_requests_total counter" in metrics.text
    assert metrics.headers["x-content-type-options"] == "nosniff"  # still inside the security-header layer
    assert client.head("/monitoring/metrics", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/monitoring/metrics?x=1", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/monitoring/metrics", headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200
    health = client.get("/monitoring/health", headers=bearer(TOKEN))
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for path in OTHER_PATHS:
        assert client.get("/monitoring" + path, headers=bearer(TOKEN)).status_code == denied, path
    for headers in (
        {},
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        bearer(TOKEN.upper()),
        bearer(""),
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Token {TOKEN}"},
        {"X-Metrics-Token": TOKEN},
    ):
        assert client.get("/monitoring/metrics", headers=headers).status_code == denied, headers
    assert client.get(f"/monitoring/metrics?token={TOKEN}").status_code == denied
    assert client.post("/monitoring/metrics", headers=bearer(TOKEN)).status_code == denied


@pytest.mark.parametrize("path", TRICKS)
def test_no_spelling_of_a_path_carries_the_token_further(monitor: Monitor, path: str) -> None:
    app = monitor.asgi_app(auth=BasicAuth("admin", "s3cret"), metrics_token=TOKEN)
    status, body = raw_get(app, path, bearer(TOKEN))
    assert status == 401, (path, status, body[:200])
    status, body = raw_get(app, path, bearer(TOKEN), root="/monitoring")
    assert status == 401, (path, status, body[:200])


def test_the_token_works_at_any_mount_point(monitor: Monitor) -> None:
    app = monitor.asgi_app(auth=BasicAuth("admin", "s3cret"), metrics_token=TOKEN)
    for root in ("", "/monitoring", "/a/b/ops"):
        assert raw_get(app, "/metrics", bearer(TOKEN), root=root)[0] == 200
        assert raw_get(app, "/health", bearer(TOKEN), root=root)[0] == 200
        assert raw_get(app, "/api/stats", bearer(TOKEN), root=root)[0] == 401
    nested = host(Starlette(routes=[Mount("/inner", app=app)]), "/outer")
    assert nested.get("/outer/inner/metrics", headers=bearer(TOKEN)).status_code == 200
    assert nested.get("/outer/inner/api/stats", headers=bearer(TOKEN)).status_code == 401


def test_the_first_authorization_header_decides(monitor: Monitor) -> None:
    app = monitor.asgi_app(auth=BasicAuth("admin", "s3cret"), metrics_token=TOKEN)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/metrics",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"authorization", b"Bearer wrong"), (b"authorization", f"Bearer {TOKEN}".encode())],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    assert sent[0]["status"] == 401


def test_flask_host_with_the_token(monitor: Monitor) -> None:
    flask_app = Flask(__name__)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=BasicAuth("admin", "s3cret"), metrics_token=TOKEN)}
    )
    client = WSGIClient(flask_app)
    response = client.get("/monitoring/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200 and b"# TYPE llm_requests_total counter" in response.data
    assert client.get("/monitoring/health", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/monitoring/api/stats", headers=bearer(TOKEN)).status_code == 401
    assert client.get("/monitoring/metrics").status_code == 401
    assert client.get("/monitoring/metrics", headers=basic("admin", "s3cret")).status_code == 200


@pytest.mark.parametrize("token", ["", " ", "has space", "tab\there", "naïve", "line\nbreak"])
def test_unusable_tokens_are_refused_when_building_the_app(monitor: Monitor, token: str) -> None:
    with pytest.raises(ValueError, match="metrics_token"):
        monitor.asgi_app(auth=BasicAuth("admin", "s3cret"), metrics_token=token)
    with pytest.raises(ValueError, match="metrics_token"):
        monitor.wsgi_app(auth=BasicAuth("admin", "s3cret"), metrics_token=token)


def test_without_auth_the_app_stays_open_and_the_token_changes_nothing(monitor: Monitor) -> None:
    client = host(monitor.asgi_app(metrics_token=TOKEN))
    assert client.get("/monitoring/metrics").status_code == 200
    assert client.get("/monitoring/api/stats").status_code == 200
