"""Behind gunicorn (PEP 3333 environs: the path's raw bytes decoded as latin-1), a path that is not UTF-8 and a
query string with raw or percent-escaped invalid UTF-8 get 400/401 — never a 500 or a traceback — with and
without auth, called directly and through Flask's DispatcherMiddleware."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client as WerkzeugClient

from llm_monitor_mw import BasicAuth, Monitor
from llm_monitor_mw.record import CallRecord
from tests.seed import insert
from tests.web.gunicorn import call_wsgi, environ

AUTH = "Basic " + base64.b64encode(b"admin:pw").decode()


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    mon = Monitor(Path(tmp_path_factory.mktemp("wsgi")) / "w.db")
    insert(
        mon,
        [
            CallRecord(
                started_at=1_780_000_000, provider="openai", operation="chat", endpoint="/v1/chat", status_code=200
            )
        ],
    )
    yield mon
    mon.close()


@pytest.fixture(scope="module")
def open_app(monitor: Monitor) -> Any:
    return monitor.wsgi_app()


@pytest.fixture(scope="module")
def guarded_app(monitor: Monitor) -> Any:
    return monitor.wsgi_app(auth=BasicAuth("admin", "pw"))


# The path bytes b"/\xff\xfe" and b"/requests/\xc0\xaf" (an overlong '/') as gunicorn hands them over.
BAD_PATHS = ["/\xff\xfe", "/requests/\xc0\xaf", "/api/requests/\xff", "/static/\xed\xa0\x80.css"]


@pytest.mark.parametrize("path_info", BAD_PATHS)
@pytest.mark.parametrize("authorization", [None, AUTH])
def test_invalid_utf8_path_is_400(open_app: Any, guarded_app: Any, path_info: str, authorization: str | None) -> None:
    for app in (open_app, guarded_app):
        headers = {"Authorization": authorization} if authorization else {}
        status, body = call_wsgi(app, environ(path_info, "", headers))
        assert status == 400, (path_info, status, body)
        assert b"Traceback" not in body and b"UTF-8" in body


def test_invalid_utf8_script_name_is_400(open_app: Any) -> None:
    env = environ("/", "")
    env["SCRIPT_NAME"] = "/mon\xff"
    assert call_wsgi(open_app, env)[0] == 400


@pytest.mark.parametrize(
    ("path_info", "query", "expected"),
    [
        ("/api/requests", "q=%ff%fe", 200),  # percent-escaped invalid UTF-8 decodes to U+FFFD: a search
        ("/api/requests", "q=\xff\xfe", 200),  # raw bytes (latin-1 in the environ): re-escaped, then the same
        ("/api/requests", "since=\xff", 400),
        ("/requests", "tag=\xff:\xfe&since=%ff", 400),
        ("/", "since=%C0%AF", 400),
        ("/api/requests/1", "x=\xe9", 200),
    ],
)
def test_invalid_utf8_query_is_handled(
    open_app: Any, guarded_app: Any, path_info: str, query: str, expected: int
) -> None:
    status, body = call_wsgi(open_app, environ(path_info, query))
    assert status == expected, (status, body[:300])
    assert call_wsgi(guarded_app, environ(path_info, query))[0] == 401  # auth comes first on a decodable path
    assert call_wsgi(guarded_app, environ(path_info, query, {"Authorization": AUTH}))[0] == expected


def test_through_flask_dispatcher_middleware(monitor: Monitor) -> None:
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def home() -> str:
        return "host app"

    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=BasicAuth("admin", "pw"))}
    )
    client = WerkzeugClient(flask_app)
    for headers in ({}, {"Authorization": AUTH}):
        # werkzeug's test client would re-encode the path as UTF-8: set the raw gunicorn-style value directly
        response = client.get(
            "/monitoring/x", headers=headers, environ_overrides={"PATH_INFO": "/monitoring/\xff\xfe"}, buffered=True
        )
        assert response.status_code == 400 and b"Traceback" not in response.data
        response = client.get(
            "/monitoring/api/requests",
            headers=headers,
            environ_overrides={"QUERY_STRING": "q=\xff&since=%ff"},
            buffered=True,
        )
        assert response.status_code == (400 if headers else 401), response.data
    assert client.get("/", buffered=True).data == b"host app"
    ok = client.get("/monitoring/api/requests", headers={"Authorization": AUTH}, buffered=True)
    assert ok.status_code == 200 and ok.json["total"] == 1  # type: ignore[index]
