"""The monitoring app mounted in FastAPI, Starlette and Flask at different prefixes, nested, and behind a proxy:
every URL it emits carries the mount point and resolves."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client as WerkzeugClient

from llm_monitor_mw import BasicAuth, Monitor
from llm_monitor_mw.record import CallRecord

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
URL_ATTRS = re.compile(r'(?:href|src|action|hx-get|hx-post|hx-push-url)="([^"]+)"')


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    mon = Monitor(tmp_path_factory.mktemp("mount") / "m.db")
    mon.store.writer.prepare = lambda r: r
    for i in range(5):
        mon.store.writer.submit(
            CallRecord(
                started_at=1_780_000_000 + i,
                provider="openai",
                operation="chat",
                endpoint="/v1/chat/completions",
                response_model="gpt-4o-mini",
                status_code=200,
            )
        )
    mon.flush(5)
    yield mon
    mon.close()


Getter = Callable[[str], tuple[int, str]]


def crawl(get: Getter, start: str, prefix: str) -> set[str]:
    """Fetch ``start`` and every same-app URL it links to (one level); all must carry ``prefix`` and answer 200."""
    status, body = get(start)
    assert status == 200, (start, status)
    urls = {u.replace("&amp;", "&") for u in URL_ATTRS.findall(body)}
    assert urls, "the page links to nothing"
    for url in urls:
        assert url.startswith(prefix + "/"), (url, prefix)
        assert get(url)[0] == 200, url
    return urls


def starlette_getter(app: Any, **kw: Any) -> Getter:
    client = TestClient(app, **kw)

    def get(url: str) -> tuple[int, str]:
        response = client.get(url, headers=AUTH)
        return response.status_code, response.text

    return get


@pytest.mark.parametrize("prefix", ["/monitoring", "/ops/llm"])
def test_fastapi(monitor: Monitor, prefix: str) -> None:
    app = FastAPI()
    app.mount(prefix, monitor.asgi_app(auth=BasicAuth("admin", "pw")))
    crawl(starlette_getter(app), prefix + "/", prefix)


@pytest.mark.parametrize("prefix", ["/monitoring", "/ops/llm"])
def test_starlette(monitor: Monitor, prefix: str) -> None:
    app = Starlette(routes=[Mount(prefix, app=monitor.asgi_app(auth=BasicAuth("admin", "pw")))])
    crawl(starlette_getter(app), prefix + "/", prefix)


def test_nested_mounts(monitor: Monitor) -> None:
    inner = Starlette(routes=[Mount("/llm", app=monitor.asgi_app(auth=BasicAuth("admin", "pw")))])
    app = Starlette(routes=[Mount("/admin", app=inner)])
    crawl(starlette_getter(app), "/admin/llm/", "/admin/llm")


def test_behind_a_proxy_root_path(monitor: Monitor) -> None:
    """A proxy serving the whole app under /proxy (uvicorn --root-path /proxy): links must include it."""
    app = Starlette(routes=[Mount("/monitoring", app=monitor.asgi_app(auth=BasicAuth("admin", "pw")))])
    client = TestClient(app, root_path="/proxy")
    page = client.get("/proxy/monitoring/", headers=AUTH)  # the proxy keeps the prefix in the path (ASGI spec)
    assert page.status_code == 200
    urls = URL_ATTRS.findall(page.text)
    assert urls and all(u.startswith("/proxy/monitoring/") for u in urls), urls


def flask_getter(app: Any) -> Getter:
    client = WerkzeugClient(app)

    def get(url: str) -> tuple[int, str]:
        path, _, query = url.partition("?")
        response = client.get(path, query_string=query, headers=AUTH, buffered=True)
        return response.status_code, response.get_data(as_text=True)

    return get


@pytest.mark.parametrize("prefix", ["/monitoring", "/ops/llm"])
def test_flask(monitor: Monitor, prefix: str) -> None:
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def home() -> str:
        return "host app"

    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {prefix: monitor.wsgi_app(auth=BasicAuth("admin", "pw"))}
    )
    get = flask_getter(flask_app)
    assert get("/") == (200, "host app")
    crawl(get, prefix + "/", prefix)
    status, body = get(prefix + "/api/requests")
    assert status == 200 and '"total":5' in body.replace(" ", "")
    denied = WerkzeugClient(flask_app).get(prefix + "/api/requests", buffered=True)
    assert denied.status_code == 401


def test_flask_static_and_auth(monitor: Monitor, tmp_path: Path) -> None:
    flask_app = Flask(__name__)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=BasicAuth("admin", "pw"))}
    )
    client = WerkzeugClient(flask_app)
    assert client.get("/monitoring/static/style.css", buffered=True).status_code == 401
    response = client.get("/monitoring/static/style.css", headers=AUTH, buffered=True)
    assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff"
