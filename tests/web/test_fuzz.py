"""No 500 from any query string or path: every GET route of the app, fuzzed with Hypothesis, over ASGI and WSGI,
against a database that also holds hostile stored values (2**63-1 token counts, infinite durations)."""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.web import alerts, api, pages
from llm_monitor_mw.web.gate import Gate
from llm_monitor_mw.web.templating import create_environment
from tests.seed import insert
from tests.web.gunicorn import call_wsgi, environ

NOW = time.time()
PARAMS = (*pages.QUERY_KEYS, *pages.LIST_KEYS)
"""Every query parameter a GET route reads (the API's are a subset of the pages')."""


def get_routes(monitor: Monitor) -> list[str]:
    """The path templates of every GET route, read from the route lists the app is built from."""
    env, gate = create_environment(), Gate()
    store = monitor.store
    routes = [
        *pages.routes(store, env, gate),
        *alerts.routes(lambda: monitor.alerts, env, gate),
        *api.routes(store, gate),
    ]
    paths = [r.path for r in routes if isinstance(r, Route) and r.methods and "GET" in r.methods]
    return [*paths, "/metrics", "/health"]


@pytest.fixture(scope="module")
def hostile_monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    monitor = Monitor(path)
    rows = [
        CallRecord(
            started_at=NOW - 60 * i,
            provider="openai" if i % 2 else "anthropic",
            operation="chat",
            endpoint="/v1/chat/completions",
            response_model="gpt-4o-mini" if i % 2 else "claude-haiku-4-5",
            status_code=429 if i % 5 == 0 else 200,
            error="slow down" if i % 5 == 0 else None,
            input_tokens=100,
            output_tokens=20,
            cost_usd=0.001,
            duration_ms=100.0 + i,
            ttft_ms=10.0,
            streamed=bool(i % 3),
            route="/chat",
            user="alice",
            tags={"feature": "chat", "é": "ü", 'we"ird': "x"},
        )
        for i in range(12)
    ]
    insert(monitor, rows)
    # Values only an old database (before input validation) can hold, written past the writer.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE calls SET input_tokens = ?, total_tokens = ?, duration_ms = ?, retry_after_s = ?, ttft_ms = ?"
            " WHERE id = (SELECT max(id) FROM calls)",
            (2**63 - 1, 2**63 - 1, math.inf, math.inf, -math.inf),
        )
    conn.close()
    yield monitor
    monitor.close()


@pytest.fixture(scope="module")
def route_paths(hostile_monitor: Monitor) -> list[str]:
    return get_routes(hostile_monitor)


@pytest.fixture(scope="module")
def client(hostile_monitor: Monitor) -> Iterator[TestClient]:
    with TestClient(hostile_monitor.asgi_app(), raise_server_exceptions=False) as c:
        yield c


# ---- strategies ---------------------------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=30)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-999, 999), st.integers(-400, 400)),
    st.sampled_from(["1e300", "-1e20", "²", "١٢", "1_000", " 5", "0x10", "nan", "inf", "-0", str(2**63), "00"]),
)
times = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**15), st.sampled_from(["s", "m", "min", "h", "d", "w"])),
    st.floats(0, 253402300799).map(str),
    st.sampled_from(["0001-01-01", "9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00+14:00"]),
)
hostile = st.sampled_from(
    ["\x00", "a\x00b", "k:\x00", "\x00:v", ":", "feature:chat", 'we"ird:x', "é:ü", "x" * 5000, "\ufffd", "%ff", "\r\n"]
)
values = st.one_of(texts, numbers, times, hostile, st.sampled_from(["24h", "error", "ok", "cost", "asc", "time"]))
TYPED = {"since": st.one_of(times, numbers), "until": st.one_of(times, numbers), "limit": numbers, "offset": numbers}
"""Values of the parameter's own kind most of the time, so that parsing gets past the first check."""
VALID = {
    "range": ["1h", "24h", "90d"],
    "since": ["2h", "0", str(int(NOW) - 86400), "2026-01-01T00:00:00Z"],
    "until": ["1m", str(int(NOW) + 60)],
    "provider": ["openai"],
    "model": ["gpt-4o-mini"],
    "status": ["ok", "error"],
    "route": ["/chat"],
    "user": ["alice"],
    "instance": ["web-1"],
    "tag": ["feature:chat", "é:ü"],
    "tool": ["get_weather"],
    "key": ["3f2a9c1e5b7d0a46", "3F2A9C1E5B7D0A46"],
    "q": ["slow"],
    "sort": ["time", "cost", "duration"],
    "dir": ["asc", "desc"],
    "limit": ["1", "25", "200", "1000"],
    "offset": ["0", "5", str(10**9)],
    "rank": ["cost", "requests"],
}
"""Good values (some accepted only by some routes), so that other parameters do not answer 400 first."""


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    """One known parameter with any value (of its kind, mostly) and up to two with good ones — a bad value answers
    400 before the next parameter is read, so several at once would mask each other — plus unknown names."""
    params = draw(st.dictionaries(texts, values, max_size=2))
    for name in draw(st.lists(st.sampled_from(PARAMS), max_size=2, unique=True)):
        params[name] = draw(st.sampled_from(VALID[name]))
    suspect = draw(st.sampled_from(PARAMS))
    params[suspect] = draw(st.one_of(TYPED[suspect], values) if suspect in TYPED else values)
    return params


raw_bytes = st.binary(max_size=12)
path_ids = st.one_of(
    st.sampled_from(["1", "0", "-1", "²", "١٢", "1_0", str(2**63 - 1), str(2**63), "9" * 40, "%ff%fe", "1e3"]),
    st.integers(-(2**70), 2**70).map(str),
    texts,
)


def fill(template: str, segment: str) -> str:
    """``template`` with each path parameter (``{id}``, ``{trace_id:path}``) set to ``segment``."""
    return re.sub(r"\{[^}]+\}", lambda _: quote(segment, safe="") or "1", template)


def query_string(params: dict[str, str], extra: list[tuple[bytes, bytes]]) -> str:
    """UTF-8 percent-encoded ``params`` plus raw byte pairs (invalid UTF-8 once decoded, by design)."""
    parts = [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items()]
    parts += [f"{quote_from_bytes(k)}={quote_from_bytes(v)}" for k, v in extra]
    return "&".join(parts)


# ---- ASGI ---------------------------------------------------------------------------------------------------------


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    params=queries(),
    extra=st.lists(st.tuples(raw_bytes, raw_bytes), max_size=2),
    segment=path_ids,
    htmx=st.booleans(),
)
def test_no_500_from_any_query_string_asgi(
    client: TestClient,
    route_paths: list[str],
    data: st.DataObject,
    params: dict[str, str],
    extra: list[tuple[bytes, bytes]],
    segment: str,
    htmx: bool,
) -> None:
    route = data.draw(st.sampled_from(route_paths))
    url = fill(route, segment) + "?" + query_string(params, extra)
    response = client.get(url, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code < 500, (url, response.status_code, response.text[:500])
    if response.headers.get("content-type", "").startswith("application/json"):
        assert "Infinity" not in response.text and "NaN" not in response.text, url
        response.json()  # strict JSON


def test_every_route_answers_the_hostile_rows(client: TestClient, route_paths: list[str]) -> None:
    """Without parameters (the default 24 h holds the hostile row) every GET route answers, and the API's JSON
    carries the stored infinity as null."""
    items = client.get("/api/requests", params={"limit": 100}).json()["items"]
    last = min(items, key=lambda item: item["started_at"])  # the oldest row was made hostile
    assert len(route_paths) >= 20
    for route in route_paths:
        response = client.get(fill(route, str(last["id"])))
        # a trace or session id is not a call id: those routes answer 404 (no such trace) without failing
        expected = (200, 404) if "trace_id" in route or "session_id" in route else (200,)
        assert response.status_code in expected, (route, response.status_code, response.text[:300])
    assert last["duration_ms"] is None and last["retry_after_s"] is None and last["ttft_ms"] is None
    detail = client.get(f"/api/requests/{last['id']}")
    assert detail.status_code == 200 and detail.json()["duration_ms"] is None


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/requests", {"since": "1e300"}, "since"),
        ("/api/requests", {"until": "-1e20"}, "until"),
        ("/api/summary", {"since": "1e18"}, "since"),
        ("/api/summary", {"until": "0001-01-01T00:00+14:00"}, "until"),
        ("/api/summary", {"since": "99999999999w"}, "since"),
        ("/api/requests", {"limit": "²"}, "limit"),
        ("/api/requests", {"limit": "١٢"}, "limit"),
        ("/api/requests", {"offset": "1_000"}, "offset"),
        ("/api/requests", {"tag": "k:\x00"}, "tag"),
        ("/api/requests", {"q": "a\x00b"}, "q"),
        ("/api/requests", {"provider": "x" * 201}, "provider"),
        ("/api/requests", {"user": "\x07"}, "user"),
        ("/api/requests/²", {}, "id"),
        ("/api/requests/١٢", {}, "id"),
        ("/api/requests/0", {}, "id"),
        (f"/api/requests/{2**63}", {}, "id"),
    ],
)
def test_bad_values_are_400_naming_the_parameter(
    client: TestClient, path: str, params: dict[str, str], parameter: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/", {"until": "-1e20"}, "until"),
        ("/requests", {"until": "0001-01-01"}, "until"),
        ("/costs", {"until": str(2**63)}, "until"),
        ("/errors", {"since": "nan"}, "since"),
        ("/requests.csv", {"tag": "\x00:v"}, "tag"),
        ("/fragments/overview/kpis", {"q": "\x00"}, "q"),
        ("/requests", {"sort": "\x00"}, "sort"),
        ("/requests/²", {}, "id"),
        (f"/requests/{2**63}", {}, "id"),
    ],
)
def test_bad_values_are_a_400_page(client: TestClient, path: str, params: dict[str, str], parameter: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text[:300]
    assert f"<code>{parameter}</code>" in response.text


def test_the_largest_id_is_a_404(client: TestClient) -> None:
    assert client.get(f"/api/requests/{2**63 - 1}").status_code == 404
    assert client.get(f"/requests/{2**63 - 1}").status_code == 404


@pytest.mark.parametrize(
    ("tag", "count"), [("é:ü", 12), ('we"ird:x', 12), ("feature:chat", 12), ("é:x", 0), ("$.feature:chat", 0)]
)
def test_any_tag_key_is_matched_literally(client: TestClient, tag: str, count: int) -> None:
    """Keys that a JSON path cannot spell (quotes) or that are stored \\u-escaped (non-ASCII) still match."""
    assert client.get("/api/requests", params={"tag": tag, "since": "0"}).json()["total"] == count


# ---- WSGI: gunicorn-style environs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wsgi_app(hostile_monitor: Monitor) -> Any:
    return hostile_monitor.wsgi_app()


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), params=queries(), raw_path=raw_bytes, raw_query=raw_bytes)
def test_no_500_from_any_path_or_query_wsgi(
    wsgi_app: Any, route_paths: list[str], data: st.DataObject, params: dict[str, str], raw_path: bytes,
    raw_query: bytes,
) -> None:  # fmt: skip
    route = data.draw(st.sampled_from(route_paths))
    path = fill(route, "1").encode() + (raw_path if data.draw(st.booleans()) else b"")
    query = query_string(params, []).encode() + b"&" + raw_query  # raw, unescaped bytes, as a client may send
    status, body = call_wsgi(wsgi_app, environ(path.decode("latin-1"), query.decode("latin-1")))
    assert status < 500, (path, query, status, body[:300])
    assert b"Traceback" not in body
