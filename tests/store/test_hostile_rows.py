"""Every read survives every stored row: values an old or foreign writer stored (2**63-1 token counts, infinite
and NaN durations and costs, tags that are not a JSON object), written straight into the file with sqlite3."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.alerts.store import AlertStore
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.analytics import DIMENSIONS, Analytics
from llm_monitor_mw.store.queries import Filters
from tests.seed import insert

NOW = time.time()
BIG = 2**63 - 1
INF = math.inf
# (input_tokens, output_tokens, total_tokens, cost_usd, duration_ms, ttft_ms, tags) of rows no validation saw
HOSTILE = [
    (BIG, BIG, BIG, INF, INF, -INF, '{"feature":"chat"}'),
    (BIG, 1, BIG, -INF, -INF, INF, '{"feature":null}'),
    (-(2**63), 0, -(2**63), math.nan, math.nan, math.nan, "not json"),
    (BIG, None, None, 1e308, 1.7e308, 1e308, "[1, 2]"),
    (None, None, None, 1e308, 1.7e308, None, "5"),
]


def good(i: int, **kw: object) -> CallRecord:
    base: dict[str, object] = {
        "started_at": NOW - 3 * 86400 + i * 1800,  # spread over three days: raw edges, hours and days all answer
        "provider": "openai" if i % 2 else "anthropic",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "response_model": "gpt-4o-mini" if i % 2 else "claude-haiku-4-5",
        "status_code": 429 if i % 7 == 0 else 200,
        "error_type": "rate_limit" if i % 7 == 0 else None,
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cost_usd": 0.001,
        "duration_ms": 100.0 + i,
        "ttft_ms": 10.0,
        "route": "/chat",
        "user": "alice",
        "tags": {"feature": "chat"},
        "call_id": f"c{i}",
    }
    base.update(kw)
    return CallRecord(**base)  # type: ignore[arg-type]


def seed_hostile(path: Path, when: list[float]) -> None:
    """Rows with the :data:`HOSTILE` values at each time in ``when``, as a writer without checks would store them."""
    with sqlite3.connect(path) as conn:
        for ts in when:
            for tokens_in, tokens_out, total, cost, duration, ttft, tags in HOSTILE:
                conn.execute(
                    "INSERT INTO calls (started_at, provider, operation, endpoint, method, host, call_id, attempt,"
                    " model, response_model, status_code, ok, error_type, streamed, input_tokens, output_tokens,"
                    " total_tokens, cached_tokens, cost_usd, duration_ms, ttft_ms, retry_after_s, tags, route, user)"
                    " VALUES (?, 'openai', 'chat', '/v1/chat/completions', 'POST', 'h', 'x', 1, 'gpt-4o-mini',"
                    " 'gpt-4o-mini', 500, 0, 'server', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, '/chat', 'mallory')",
                    (ts, tokens_in, tokens_out, total, tokens_in, cost, duration, ttft, INF, tags),
                )
    conn.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    path = Path(tmp_path_factory.mktemp("hostile")) / "hostile.db"
    monitor = Monitor(path)
    insert(monitor, [good(i) for i in range(3 * 48)])
    # twice at the same times, so every roll-up row (hour, day) adds up two hostile rows: 2 * (2**63-1) overflows
    when = [NOW - 2 * 86400, NOW - 2 * 86400 + 1, NOW - 7200, NOW - 7199, NOW - 60, NOW - 59]
    seed_hostile(path, when)
    yield monitor
    monitor.close()


def windows() -> list[Filters]:
    """Ranges answered from raw rows only, from raw edges + roll-ups, and the whole history."""
    return [
        Filters(since=NOW - 3600, until=NOW + 1),
        Filters(since=NOW - 4 * 86400 + 123, until=NOW + 1),
        Filters(since=NOW - 4 * 86400, until=NOW + 1, provider="openai"),
        Filters(since=NOW - 4 * 86400, until=NOW + 1, user="mallory"),
        Filters(since=NOW - 4 * 86400, until=NOW + 1, tag=("feature", "chat")),
    ]


def check_json(value: object) -> None:
    """What the API would answer must be JSON (no Infinity, no NaN)."""
    json.dumps(value, allow_nan=False, default=str)


@pytest.mark.parametrize("use_rollups", [True, False])
def test_every_analytics_read_survives(hostile: Monitor, use_rollups: bool) -> None:
    analytics = Analytics(hostile.db, use_rollups=use_rollups)
    for filters in windows():
        for step in (0, 60, 3600, 86400):
            report = analytics.report(filters, step, model_latency=True)
            check_json([report.totals, report.series, report.by_model, report.by_provider])
        totals = analytics.totals(filters)
        assert isinstance(totals["input_tokens"], int) and totals["requests"] > 0
        summary = analytics.summary(filters)
        check_json(summary)
        for dim in DIMENSIONS:
            for order in ("cost", "requests", "errors"):
                check_json(analytics.by_dim(filters, dim, order=order, limit=10))
            check_json(analytics.by_dim(filters, dim, errors_only=True))
        assert analytics.count(filters) >= 0
        check_json(analytics.cube(filters, 3600, ("provider", "model")))
        check_json(analytics.histograms(filters, 3600))
        for sort in ("time", "cost", "duration", "tokens"):
            check_json(analytics.page(filters, sort=sort, limit=500))
        check_json(list(analytics.export(filters)))
        check_json(analytics.latest_errors(filters))
        check_json(analytics.facets(filters))
    check_json(analytics.summary(Filters()))
    assert analytics.has_calls()
    check_json(analytics.attempts("x", NOW - 60))


def test_sums_leave_implausible_values_out(hostile: Monitor) -> None:
    """Not just "no exception": values no provider sends (beyond 2**53, infinite, NaN) are unknown, as capture
    would have made them; the good rows and the plausible hostile values still add up exactly."""
    everything = Filters(since=NOW - 4 * 86400, until=NOW + 1)
    n = 3 * 48
    for analytics in (Analytics(hostile.db), Analytics(hostile.db, use_rollups=False)):
        totals = analytics.totals(everything)
        check_json(totals)
        assert totals["requests"] == n + 6 * len(HOSTILE)
        assert totals["input_tokens"] == 100 * n and isinstance(totals["input_tokens"], int)
        assert totals["output_tokens"] == 20 * n + 6 * 1  # the hostile rows' 1 and 0 are plausible
        assert totals["total_tokens"] == 120 * n
        assert totals["cost_usd"] == pytest.approx(0.001 * n) and totals["cost_unknown"] == 6 * len(HOSTILE)
        assert totals["duration_n"] == n and totals["latency_mean_ms"] == pytest.approx(100 + (n - 1) / 2)
        assert totals["latency_p50_ms"] == pytest.approx(100 + n / 2, rel=0.05)
        mallory = analytics.by_dim(everything, "user", order="requests")
        assert [(r["value"], r["requests"], r["cost_usd"]) for r in mallory] == [
            ("alice", n, pytest.approx(0.001 * n)),
            ("mallory", 6 * len(HOSTILE), None),  # none of its costs is plausible: unknown, not $0
        ]
        tags = analytics.by_dim(everything, "tag", order="requests")
        assert [(r["value"], r["requests"]) for r in tags] == [
            ("feature:chat", n + 6),  # every good row and the hostile rows whose tags were a JSON object
            ("feature:", 6),  # a null tag value
        ]


def test_page_rows_hold_no_infinity(hostile: Monitor) -> None:
    rows = Analytics(hostile.db).page(Filters(since=NOW - 3600, until=NOW + 1, user="mallory"), limit=100)
    assert len(rows) == 2 * len(HOSTILE)  # the two time stamps of the last hour
    assert {r["duration_ms"] for r in rows} == {None, 1.7e308}
    assert all(r["retry_after_s"] is None for r in rows if "retry_after_s" in r)


def test_alert_sums_survive(hostile: Monitor) -> None:
    store = AlertStore(hostile.db)
    everything = store.window_stats({}, NOW - 4 * 86400, NOW + 1)  # inf + -inf would make total() NULL
    assert everything.requests == 3 * 48 + 6 * len(HOSTILE) and everything.errors >= 6 * len(HOSTILE)
    assert not math.isnan(everything.cost_usd)
    alice = store.window_stats({"user": "alice"}, NOW - 4 * 86400, NOW + 1)
    assert alice.cost_usd == pytest.approx(0.001 * 3 * 48) and alice.rate_limited == len(range(0, 3 * 48, 7))
    spend = store.spend({}, "user", NOW - 4 * 86400, NOW + 1)
    assert spend["alice"] == pytest.approx(0.001 * 3 * 48)
    assert store.percentile("duration_ms", {}, NOW - 4 * 86400, NOW + 1, 0.5) is not None


PAGE_URLS = [
    "/",
    "/requests",
    "/requests?sort=duration",
    "/requests?sort=cost",
    "/requests?range=30d",
    "/costs",
    "/costs?range=30d",
    "/errors",
    "/errors?range=30d",
    "/requests.csv",
    "/requests.json",
    *(f"/fragments/{f}" for f in ("overview/kpis", "overview/charts", "overview/top", "requests/table")),
    *(f"/fragments/{f}" for f in ("costs/body", "errors/body")),
    "/api/summary",
    "/api/stats",
    "/health",
]


def crawl(monitor: Monitor, urls: list[str]) -> dict[str, httpx.Response]:
    async def run() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=monitor.asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return {url: await client.get(url) for url in urls}

    return asyncio.run(run())


def test_pages_answer_200(hostile: Monitor) -> None:
    answers = crawl(hostile, PAGE_URLS)
    assert {url: r.status_code for url, r in answers.items() if r.status_code != 200} == {}
    for url in ("/api/summary", "/requests.json"):
        check_json(json.loads(answers[url].text))  # strict JSON: no Infinity or NaN
    assert json.loads(answers["/health"].text)["status"] == "ok"


def test_api_requests_and_metrics_survive(hostile: Monitor) -> None:
    answers = crawl(hostile, ["/api/requests", "/api/requests?limit=500", "/metrics"])
    assert {url: r.status_code for url, r in answers.items() if r.status_code != 200} == {}
    check_json(json.loads(answers["/api/requests?limit=500"].text))
    assert "llm_monitor_database_up 1" in answers["/metrics"].text
