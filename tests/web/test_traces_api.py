"""The traces JSON API: ``api/traces`` (list, sort, filters, paging), ``api/traces/{id}`` (the trace, its calls
with their record ids), ``api/sessions/{id}``; 400 naming a bad parameter, 404 JSON for an unknown id; on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from tests.seed import insert

T0 = 1_780_000_000.0
PREFIX = "/monitoring"
SLASHED = "jobs/42 run"
"""A trace id with a slash and a space (an ``X-Request-ID`` can be any text)."""


def make(offset_s: float, trace_id: str | None, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": T0 + offset_s,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "status_code": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_usd": 0.001,
        "duration_ms": 100.0,
        "trace_id": trace_id,
        "call_id": f"{trace_id}-{offset_s}",
        "tool_call_count": 0,
    }
    base.update(kw)
    return CallRecord(**base)


def records() -> list[CallRecord]:
    request = {"inbound_request_id": "r1", "inbound_method": "POST", "route": "/chat", "user": "alice"}
    rows = [
        # r1: an inbound request with two calls, the second retried once; 3 attempts, 1 error, 2 tool calls
        make(0, "r1", span_name="retrieve", tool_call_count=2, tool_names=["search", "fetch"], **request),
        make(
            0.2,
            "r1",
            call_id="r1-answer",
            attempt=1,
            status_code=503,
            error_type="server_error",
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost_usd=None,
            duration_ms=50.0,
            **request,
        ),
        make(1.0, "r1", call_id="r1-answer", attempt=2, ttft_ms=30.0, duration_ms=400.0, **request),
        # run-a: a monitor.trace("digest") run, expensive and long, in a session
        make(
            10,
            "run-a",
            trace_name="digest",
            cost_usd=0.5,
            duration_ms=5000.0,
            total_tokens=5000,
            input_tokens=4000,
            output_tokens=1000,
            tags={"session": "s-1"},
        ),
        # run-b: cheap, in the same session, a different provider
        make(20, "run-b", trace_name="digest", provider="anthropic", cost_usd=None, tags={"session": "s-1"}),
        make(30, SLASHED, trace_name="job", duration_ms=90.0),
        make(40, None),  # outside any trace
    ]
    return rows


@pytest.fixture
def client(store_target: str) -> Iterator[tuple[httpx.Client, Monitor]]:
    monitor = Monitor(store_target)
    insert(monitor, records())
    host = Starlette(routes=[Mount(PREFIX, app=monitor.asgi_app())])
    with TestClient(host, base_url="http://test") as c:
        yield c, monitor
    monitor.close()


def api(c: httpx.Client, path: str, **params: Any) -> httpx.Response:
    return c.get(PREFIX + path, params=params)


def test_list_shape(client: tuple[httpx.Client, Monitor]) -> None:
    c, _ = client
    data = api(c, "/api/traces").json()
    assert data["total"] == 4 and data["limit"] == 50 and data["offset"] == 0
    assert data["sort"] == "time" and data["dir"] == "desc"
    assert [t["trace_id"] for t in data["items"]] == [SLASHED, "run-b", "run-a", "r1"]
    r1 = data["items"][-1]
    assert r1["name"] == "POST /chat" and r1["kind"] == "request"
    assert r1["calls"] == 2 and r1["attempts"] == 3 and r1["errors"] == 1 and r1["tool_calls"] == 2
    assert r1["started_at"].endswith("Z") and r1["ended_at"].endswith("Z")
    assert r1["duration_ms"] == pytest.approx(1400.0) and r1["llm_ms"] == pytest.approx(550.0)
    assert r1["total_tokens"] == 30 and r1["cost_usd"] == pytest.approx(0.002)
    assert r1["route"] == "/chat" and r1["user"] == "alice" and r1["providers"] == ["openai"]
    run_a = next(t for t in data["items"] if t["trace_id"] == "run-a")
    assert run_a["name"] == "digest" and run_a["kind"] == "run" and run_a["session"] == "s-1"
    run_b = next(t for t in data["items"] if t["trace_id"] == "run-b")
    assert run_b["cost_usd"] is None  # unknown, never 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sort": "cost"}, ["run-a", "r1", SLASHED, "run-b"]),  # unknown cost last
        ({"sort": "duration"}, ["run-a", "r1", "run-b", SLASHED]),
        ({"sort": "calls"}, ["r1"]),
        ({"sort": "tokens"}, ["run-a", "r1"]),
        ({"sort": "llm_time"}, ["run-a", "r1"]),
        ({"sort": "time", "dir": "asc"}, ["r1", "run-a", "run-b", SLASHED]),
    ],
)
def test_sorting(client: tuple[httpx.Client, Monitor], params: dict[str, str], expected: list[str]) -> None:
    c, _ = client
    items = api(c, "/api/traces", **params).json()["items"]
    assert [t["trace_id"] for t in items][: len(expected)] == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user": "alice"}, {"r1"}),
        ({"provider": "anthropic"}, {"run-b"}),
        ({"status": "error"}, {"r1"}),
        ({"tool": "fetch"}, {"r1"}),
        ({"tag": "session:s-1"}, {"run-a", "run-b"}),
        ({"since": str(T0 + 5), "until": str(T0 + 25)}, {"run-a", "run-b"}),
        ({"q": "server_err"}, {"r1"}),
    ],
)
def test_filters(client: tuple[httpx.Client, Monitor], params: dict[str, str], expected: set[str]) -> None:
    c, _ = client
    data = api(c, "/api/traces", **params).json()
    assert {t["trace_id"] for t in data["items"]} == expected and data["total"] == len(expected)


def test_paging(client: tuple[httpx.Client, Monitor]) -> None:
    c, _ = client
    pages = [api(c, "/api/traces", limit=1, offset=i, sort="cost").json() for i in range(5)]
    assert [len(p["items"]) for p in pages] == [1, 1, 1, 1, 0]
    assert all(p["total"] == 4 for p in pages)
    assert [p["items"][0]["trace_id"] for p in pages[:4]] == ["run-a", "r1", SLASHED, "run-b"]


def test_one_trace_with_its_calls(client: tuple[httpx.Client, Monitor]) -> None:
    c, _ = client
    data = api(c, "/api/traces/r1").json()
    assert data["trace"]["trace_id"] == "r1" and data["trace"]["attempts"] == 3 and data["truncated"] is False
    calls = data["calls"]
    assert [(x["call_id"], x["attempt"]) for x in calls] == [("r1-0", 1), ("r1-answer", 1), ("r1-answer", 2)]
    assert [x["offset_ms"] for x in calls] == pytest.approx([0.0, 200.0, 1000.0])
    assert calls[0]["span_name"] == "retrieve" and calls[0]["tool_names"] == ["search", "fetch"]
    assert calls[0]["started_at"].endswith("Z")
    listed = {r["id"]: r for r in api(c, "/api/requests", limit=100).json()["items"]}
    for call in calls:  # each call carries its record id: the request detail's
        assert listed[call["id"]]["call_id"] == call["call_id"]
        detail = api(c, f"/api/requests/{call['id']}").json()
        assert detail["trace_id"] == "r1"


def test_a_trace_id_with_a_slash(client: tuple[httpx.Client, Monitor]) -> None:
    c, _ = client
    response = c.get(f"{PREFIX}/api/traces/{quote(SLASHED, safe='')}")
    assert response.status_code == 200 and response.json()["trace"]["trace_id"] == SLASHED


def test_sessions(client: tuple[httpx.Client, Monitor]) -> None:
    c, _ = client
    data = api(c, "/api/sessions/s-1").json()
    assert data["session"]["id"] == "s-1" and data["session"]["calls"] == 2 and data["session"]["traces"] == 2
    assert data["session"]["cost_usd"] == pytest.approx(0.5)
    assert data["session"]["started_at"].endswith("Z") and data["session"]["ended_at"].endswith("Z")
    assert {t["trace_id"] for t in data["traces"]} == {"run-a", "run-b"}
    assert [x["trace_id"] for x in data["calls"]] == ["run-a", "run-b"]


@pytest.mark.parametrize("path", ["/api/traces/nope", "/api/sessions/nobody"])
def test_unknown_ids_are_404_json(client: tuple[httpx.Client, Monitor], path: str) -> None:
    c, _ = client
    response = c.get(PREFIX + path)
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/traces", {"sort": "ttft"}, "sort"),
        ("/api/traces", {"dir": "sideways"}, "dir"),
        ("/api/traces", {"limit": "0"}, "limit"),
        ("/api/traces", {"limit": "1001"}, "limit"),
        ("/api/traces", {"offset": "-3"}, "offset"),
        ("/api/traces", {"since": "yesterday"}, "since"),
        ("/api/traces", {"tool": "x" * 201}, "tool"),
        ("/api/traces", {"tag": "nocolon"}, "tag"),
        ("/api/traces/a%00b", {}, "trace_id"),
        ("/api/sessions/" + "s" * 201, {}, "session_id"),
    ],
)
def test_bad_parameters_are_400_json(
    client: tuple[httpx.Client, Monitor], path: str, params: dict[str, str], parameter: str
) -> None:
    c, _ = client
    response = c.get(PREFIX + path, params=params)
    assert response.status_code == 400 and response.json()["parameter"] == parameter
