"""Auth around every route (static files too), no path trick around it, CSRF, and the open-app warning."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from llm_monitor_mw import BasicAuth, Constraint, Monitor
from llm_monitor_mw.web import app as web_app

PATHS = ["/", "/api/requests", "/api/summary", "/api/stats", "/api/requests/1", "/static/style.css", "/nope"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "auth.db")
    yield mon
    mon.close()


def host(monitor: Monitor, auth: object, prefix: str = "/monitoring") -> TestClient:
    app = Starlette(
        routes=[Route("/public", lambda r: PlainTextResponse("host")), Mount(prefix, app=monitor.asgi_app(auth=auth))]
    )
    return TestClient(app, base_url="http://testserver")


@pytest.mark.parametrize("path", PATHS)
def test_basic_auth_guards_every_route(monitor: Monitor, path: str) -> None:
    client = host(monitor, BasicAuth("admin", "s3cret"))
    denied = client.get("/monitoring" + path)
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith('Basic realm="LLM monitor"')
    assert denied.headers["x-frame-options"] == "DENY"  # security headers on denials too
    for bad in (
        basic("admin", "wrong"),
        basic("root", "s3cret"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer s3cret"},
        basic("admin", ""),
    ):
        assert client.get("/monitoring" + path, headers=bad).status_code == 401
    allowed = client.get("/monitoring" + path, headers=basic("admin", "s3cret"))
    assert allowed.status_code != 401


@pytest.mark.parametrize(
    "path",
    [
        "/monitoring/static/../api/requests",
        "/monitoring/static/%2e%2e/api/requests",
        "/monitoring/static/%2E%2E%2Fapi%2Frequests",
        "/monitoring//api/requests",
        "/monitoring/api/requests.",
        "/monitoring/API/requests",
        "/monitoring/static/..%2f..%2fpyproject.toml",
        "/monitoring/./api/requests",
        "/Monitoring/api/requests",
        "/monitoring%2fapi/requests",
    ],
)
def test_no_path_trick_bypasses_auth(monitor: Monitor, path: str) -> None:
    client = host(monitor, BasicAuth("admin", "s3cret"))
    response = client.get(path)
    assert response.status_code in (401, 404), (path, response.status_code)
    assert "items" not in response.text and "[project]" not in response.text


def test_basic_auth_with_verify_callable(monitor: Monitor) -> None:
    async def verify(user: str, password: str) -> bool:
        return (user, password) == ("ana", "pw")

    client = host(monitor, BasicAuth(verify=verify))
    assert client.get("/monitoring/api/stats", headers=basic("ana", "pw")).status_code == 200
    assert client.get("/monitoring/api/stats", headers=basic("ana", "nope")).status_code == 401

    def broken(user: str, password: str) -> bool:
        raise RuntimeError("db down")

    assert (
        host(monitor, BasicAuth(verify=broken)).get("/monitoring/api/stats", headers=basic("ana", "pw")).status_code
        == 401
    )  # a verifier that raises denies


def test_basic_auth_config_errors() -> None:
    with pytest.raises(ValueError, match="non-empty password"):
        BasicAuth("admin", "")
    with pytest.raises(ValueError, match="not both"):
        BasicAuth("admin", "x", verify=lambda u, p: True)
    assert "s3cret" not in repr(BasicAuth("admin", "s3cret"))


def test_constraint_allow_deny_redirect(monitor: Monitor) -> None:
    def is_admin(request: Request) -> bool:
        return request.headers.get("x-role") == "admin"

    client = host(monitor, Constraint(is_admin))
    assert client.get("/monitoring/api/stats", headers={"x-role": "admin"}).status_code == 200
    assert client.get("/monitoring/api/stats", headers={"x-role": "guest"}).status_code == 403
    assert client.get("/monitoring/static/style.css").status_code == 403

    to_login = host(monitor, Constraint(is_admin, redirect_to=lambda r: f"/login?next={r.url.path}"))
    response = to_login.get("/monitoring/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/monitoring/"

    assert host(monitor, Constraint(is_admin, status_code=401)).get("/monitoring/").status_code == 401


def test_async_and_raising_constraints(monitor: Monitor) -> None:
    async def allow(request: Request) -> bool:
        return True

    def explode(request: Request) -> bool:
        raise RuntimeError("session store down")

    assert host(monitor, Constraint(allow)).get("/monitoring/api/stats").status_code == 200
    assert host(monitor, Constraint(explode)).get("/monitoring/api/stats").status_code == 403


def test_constraint_sees_the_hosts_session(monitor: Monitor) -> None:
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    async def login(request: Request) -> PlainTextResponse:
        request.session["user"] = "admin"
        return PlainTextResponse("ok")

    guard = Constraint(lambda r: r.scope.get("session", {}).get("user") == "admin", redirect_to="/login")
    app = Starlette(
        routes=[Route("/login", login), Mount("/monitoring", app=monitor.asgi_app(auth=guard))],
        middleware=[Middleware(SessionMiddleware, secret_key="test-secret")],
    )
    client = TestClient(app)
    assert client.get("/monitoring/api/stats", follow_redirects=False).status_code == 303
    client.get("/login")
    assert client.get("/monitoring/api/stats").status_code == 200


def test_open_app_warns_once(monitor: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    web_app._warned_open = False
    with caplog.at_level(logging.WARNING, logger="llm_monitor_mw"):
        monitor.asgi_app()
        monitor.asgi_app()
    warnings = [r for r in caplog.records if "no auth configured" in r.getMessage()]
    assert len(warnings) == 1
    assert host(monitor, None).get("/monitoring/api/stats").status_code == 200


def test_csrf_refuses_cross_site_state_changes(monitor: Monitor) -> None:
    asgi = monitor.asgi_app(auth=BasicAuth("admin", "pw"))
    inner = asgi.app.app.app  # SecurityHeaders -> AuthMiddleware -> CSRFMiddleware -> Starlette

    async def action(request: Request) -> PlainTextResponse:
        return PlainTextResponse("done")

    inner.router.routes.append(Route("/action", action, methods=["POST"]))
    client = TestClient(Starlette(routes=[Mount("/monitoring", app=asgi)]), base_url="http://testserver")
    auth = basic("admin", "pw")
    assert client.post("/monitoring/action", headers=auth).status_code == 200  # not a browser: no headers
    assert client.post("/monitoring/action", headers={**auth, "sec-fetch-site": "same-origin"}).status_code == 200
    assert client.post("/monitoring/action", headers={**auth, "sec-fetch-site": "cross-site"}).status_code == 403
    assert client.post("/monitoring/action", headers={**auth, "sec-fetch-site": "same-site"}).status_code == 403
    assert client.post("/monitoring/action", headers={**auth, "origin": "http://testserver"}).status_code == 200
    assert client.post("/monitoring/action", headers={**auth, "origin": "https://evil.example"}).status_code == 403
    assert client.post("/monitoring/action", headers={**auth, "origin": "null"}).status_code == 403
    assert client.get("/monitoring/api/stats", headers={**auth, "sec-fetch-site": "cross-site"}).status_code == 200
