"""The JSON API and index page, mounted under a prefix in a host Starlette app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from tests.seed import insert

T0 = 1_780_000_000.0  # a fixed moment; records are seeded relative to it


def make(i: int, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": T0 + i,
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
        "duration_ms": float(i + 1),
    }
    base.update(kw)
    return CallRecord(**base)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Monitor]:
    monitor = Monitor(tmp_path / "api.db")
    rows = [make(i) for i in range(100)]  # duration 1..100 ms
    rows += [
        make(
            100 + i,
            provider="anthropic",
            request_model="claude-haiku-4-5",
            response_model="claude-haiku-4-5",
            status_code=429,
            error_type="rate_limit_error",
            error="slow down",
            duration_ms=500.0,
            ttft_ms=50.0 + i,
            streamed=True,
        )
        for i in range(10)
    ]
    insert(monitor, rows)
    yield monitor
    monitor.close()


@pytest.fixture(params=["/monitoring", "/ops/llm"])
def client(request: pytest.FixtureRequest, seeded: Monitor) -> Iterator[tuple[httpx.Client, str]]:
    prefix = request.param
    host = Starlette(routes=[Mount(prefix, app=seeded.asgi_app())])
    with TestClient(host, base_url="http://test") as c:
        yield c, prefix


def test_requests_list_shape_and_order(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    data = c.get(f"{prefix}/api/requests", params={"limit": 5}).json()
    assert data["total"] == 110 and len(data["items"]) == 5
    first = data["items"][0]
    required = {
        "id",
        "started_at",
        "provider",
        "model",
        "operation",
        "endpoint",
        "status_code",
        "error",
        "streamed",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost_usd",
        "duration_ms",
        "ttft_ms",
        "tags",
    }
    assert required <= set(first)
    assert first["started_at"].endswith("Z") and first["provider"] == "anthropic"  # newest first
    assert [i["started_at"] for i in data["items"]] == sorted((i["started_at"] for i in data["items"]), reverse=True)


@pytest.mark.parametrize(
    ("params", "total"),
    [
        ({"provider": "anthropic"}, 10),
        ({"model": "gpt-4o-mini"}, 100),
        ({"status": "error"}, 10),
        ({"status": "ok"}, 100),
        ({"since": "2026-05-28T20:27:00Z"}, 110 - 20),  # T0 + 20 s
        ({"since": str(T0 + 20), "until": str(T0 + 30)}, 10),
        ({"provider": "openai", "status": "error"}, 0),
    ],
)
def test_requests_filters(client: tuple[httpx.Client, str], params: dict[str, str], total: int) -> None:
    c, prefix = client
    assert c.get(f"{prefix}/api/requests", params=params).json()["total"] == total


def test_paging(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    pages = [c.get(f"{prefix}/api/requests", params={"limit": 40, "offset": o}).json()["items"] for o in (0, 40, 80)]
    ids = [i["id"] for page in pages for i in page]
    assert len(ids) == 110 and len(set(ids)) == 110


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("api/requests", {"limit": "abc"}, "limit"),
        ("api/requests", {"limit": "0"}, "limit"),
        ("api/requests", {"limit": "100000"}, "limit"),
        ("api/requests", {"offset": "-1"}, "offset"),
        ("api/requests", {"since": "yesterday"}, "since"),
        ("api/requests", {"until": "nan"}, "until"),
        ("api/requests", {"status": "weird"}, "status"),
        ("api/requests", {"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ("api/summary", {"since": "12 parsecs"}, "since"),
        ("api/requests/abc", {}, "id"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: tuple[httpx.Client, str], path: str, params: dict[str, str], parameter: str
) -> None:
    c, prefix = client
    response = c.get(f"{prefix}/{path}", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == parameter and body["error"]
    assert "Traceback" not in response.text


def test_request_detail_and_404(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    first = c.get(f"{prefix}/api/requests", params={"limit": 1}).json()["items"][0]
    detail = c.get(f"{prefix}/api/requests/{first['id']}").json()
    assert detail["id"] == first["id"] and "request_content" in detail
    missing = c.get(f"{prefix}/api/requests/999999")
    assert missing.status_code == 404 and "error" in missing.json()


def test_summary_figures(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    data = c.get(f"{prefix}/api/summary").json()
    assert data["requests"] == 110 and data["errors"] == 10
    assert data["error_rate"] == pytest.approx(10 / 110)
    assert data["input_tokens"] == 1100 and data["output_tokens"] == 550
    assert data["cost_usd"] == pytest.approx(0.11)
    # nearest rank over 100 x (1..100 ms) + 10 x 500 ms, estimated from the log histogram (within 4.5 %)
    est = pytest.approx
    assert (data["latency_p50_ms"], data["latency_p95_ms"], data["latency_p99_ms"]) == (
        est(55.0, rel=0.045),
        est(500.0, rel=0.045),
        est(500.0, rel=0.045),
    )
    assert (data["ttft_p50_ms"], data["ttft_p95_ms"]) == (est(54.0, rel=0.045), est(59.0, rel=0.045))
    assert data["latency_mean_ms"] == pytest.approx((sum(range(1, 101)) + 10 * 500) / 110)
    by_model = {(m["provider"], m["model"]): m for m in data["by_model"]}
    openai_row = by_model[("openai", "gpt-4o-mini")]
    assert openai_row["requests"] == 100 and openai_row["errors"] == 0
    assert (openai_row["latency_p50_ms"], openai_row["latency_p95_ms"], openai_row["latency_p99_ms"]) == (
        est(50, rel=0.045),
        est(95, rel=0.045),
        est(99, rel=0.045),
    )
    assert openai_row["ttft_p50_ms"] is None  # no streamed calls: unknown
    anth = by_model[("anthropic", "claude-haiku-4-5")]
    assert anth["error_rate"] == 1.0 and anth["ttft_p50_ms"] == est(54.0, rel=0.045)


def test_summary_window(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    data = c.get(f"{prefix}/api/summary", params={"since": str(T0 + 100)}).json()
    assert data["requests"] == 10 and data["since"].endswith("Z")
    empty = c.get(f"{prefix}/api/summary", params={"since": "1h"}).json()
    assert empty["requests"] == 0 and empty["error_rate"] is None and empty["latency_p50_ms"] is None


def test_stats_show_drops(client: tuple[httpx.Client, str], seeded: Monitor) -> None:
    c, prefix = client
    seeded.store.writer.dropped += 3  # as if the queue had overflowed
    stats = c.get(f"{prefix}/api/stats").json()
    assert stats["dropped"] == 3 and stats["written"] == 110 and stats["failed"] == 0


def test_index_links_follow_the_prefix(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    page = c.get(f"{prefix}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = re.findall(r'(?:href|src|action)="([^"]+)"', page.text)
    assert urls and all(u.startswith(prefix + "/") for u in urls), urls
    for url in urls:
        assert c.get(url.replace("&amp;", "&")).status_code == 200, url


def test_security_headers_everywhere(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    for path in ("/", "/api/requests", "/api/summary", "/static/style.css", "/api/requests/x", "/nope"):
        response = c.get(prefix + path)
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "unsafe-inline" not in response.headers["content-security-policy"]


def test_unknown_routes_are_json_404(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    response = c.get(f"{prefix}/api/nothing")
    assert response.status_code == 404 and response.json()["error"]


def test_stored_text_is_escaped(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "xss.db")
    insert(monitor, [make(0, provider="<script>alert(1)</script>")])
    host = Starlette(routes=[Mount("/m", app=monitor.asgi_app())])
    with TestClient(host, base_url="http://t") as c:
        assert "<script>alert" not in c.get("/m/").text
        assert c.get("/m/api/requests").json()["items"][0]["provider"] == "<script>alert(1)</script>"
    monitor.close()
