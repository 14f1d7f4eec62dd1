"""Usage per API key on the dashboard and in the API: the Costs panel, the ``key=`` filter, names, escaping."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from tests.seed import insert as seed

NOW = time.time()
BILLING = "3f2a9c1e5b7d0a46"
SEARCH = "a1b2c3d4e5f60718"
HOSTILE = "fedcba9876543210"
XSS = "<script>alert(1)</script>"


def rec(minutes_ago: float, fp: str | None, hint: str | None, cost: float, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": NOW - minutes_ago * 60,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "status_code": 200,
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cost_usd": cost,
        "duration_ms": 100.0,
        "call_id": f"c{minutes_ago}",
        "attempt": 1,
        "key_fingerprint": fp,
        "key_hint": hint,
    }
    base.update(kw)
    return CallRecord(**base)


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Monitor]]:
    target = str(tmp_path / "k.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    monitor = Monitor(target, flush_interval=0.05, key_names={BILLING[:8]: "billing-service"})
    seed(
        monitor,
        [
            rec(1, BILLING, "sk-proj-…wxyz", 0.5),
            rec(2, BILLING, "sk-proj-…wxyz", 0.25, status_code=500, error_type="http_500"),
            rec(3, SEARCH, "sk-ant-api03-…1234", 0.125),
            rec(4, HOSTILE, XSS, 0.0625),
            rec(5, None, None, 1.0),  # no key: in the totals, in no key's row
        ],
    )
    with TestClient(monitor.asgi_app()) as tc:
        yield tc, monitor
    monitor.close()


def test_store_breakdown(client: tuple[TestClient, Monitor]) -> None:
    _, monitor = client
    from llm_monitor_mw.store.read import Filters

    rows = monitor.store.analytics.by_key(Filters(since=NOW - 3600, until=NOW + 60))
    assert [r["key_fingerprint"] for r in rows] == [BILLING, SEARCH, HOSTILE]
    billing = rows[0]
    assert billing["key_hint"] == "sk-proj-…wxyz"
    assert [billing[k] for k in ("requests", "errors", "input_tokens", "total_tokens")] == [2, 1, 200, 240]
    assert billing["cost_usd"] == pytest.approx(0.75) and billing["cost_n"] == 2
    assert billing["share"] == pytest.approx(0.75 / 0.9375) and billing["error_rate"] == 0.5
    by_requests = monitor.store.analytics.by_key(Filters(since=NOW - 3600, until=NOW + 60), order="requests", limit=1)
    assert [r["key_fingerprint"] for r in by_requests] == [BILLING]
    only = monitor.store.analytics.by_key(Filters(since=NOW - 3600, until=NOW + 60, key=SEARCH))
    assert [(r["key_fingerprint"], r["requests"]) for r in only] == [(SEARCH, 1)]


def test_costs_panel(client: tuple[TestClient, Monitor]) -> None:
    tc, _ = client
    page = tc.get("/costs?range=1h")
    assert page.status_code == 200
    body = page.text
    panel = body[body.index('id="spend-by-key"') :]
    panel = panel[: panel.index("</section>")]
    assert "Spend by API key" in panel
    # the named key by its name (its hint and short fingerprint beside it), the others by hint and fingerprint
    assert "billing-service" in panel and BILLING[:8] in panel
    assert "sk-ant-api03-…1234 · " + SEARCH[:8] in panel
    assert panel.index("billing-service") < panel.index(SEARCH[:8]) < panel.index(HOSTILE[:8])
    assert f"requests?range=1h&amp;key={SEARCH}" in panel
    fragment = tc.get("/fragments/costs/body?range=1h", headers={"HX-Request": "true"})
    assert 'id="spend-by-key"' in fragment.text


def test_hostile_hint_is_escaped(client: tuple[TestClient, Monitor]) -> None:
    tc, _ = client
    (hostile,) = _ids(client[1], HOSTILE)
    for path in ("/costs?range=1h", f"/requests?range=1h&key={HOSTILE}", f"/requests/{hostile['id']}"):
        body = tc.get(path).text
        assert XSS not in body
    costs = tc.get("/costs?range=1h").text
    assert html.escape(XSS) in costs or "&lt;script&gt;" in costs
    api = tc.get("/api/keys?since=2h").json()
    assert any(item["key_hint"] == XSS for item in api["items"])  # JSON carries it as data


def _ids(monitor: Monitor, fp: str) -> list[dict[str, Any]]:
    from llm_monitor_mw.store.read import Filters

    return monitor.store.queries.requests(Filters(key=fp), limit=10)[0]


def test_requests_log_filtered_by_key(client: tuple[TestClient, Monitor]) -> None:
    tc, monitor = client
    from llm_monitor_mw.store.read import Filters

    everything, _ = monitor.store.queries.requests(Filters(), limit=10)
    billing = {r["id"] for r in everything if r["id"] in {i["id"] for i in _ids(monitor, BILLING)}}
    page = tc.get(f"/requests?range=1h&key={BILLING.upper()}")
    assert page.status_code == 200 and len(billing) == 2
    for row in everything:
        assert (f"/requests/{row['id']}?" in page.text or f'/requests/{row["id"]}"' in page.text) == (
            row["id"] in billing
        )
    assert f'name="key" value="{BILLING}"' in page.text  # the filter form keeps (and shows) the filter
    api = tc.get(f"/api/requests?key={BILLING}").json()
    assert api["total"] == 2
    assert tc.get(f"/api/requests?key={SEARCH}").json()["total"] == 1
    assert tc.get("/api/requests").json()["total"] == 5
    for bad in ("xyz", BILLING[:8], BILLING + "0", "' OR 1=1 --"):
        answer = tc.get("/api/requests", params={"key": bad})
        assert answer.status_code == 400 and answer.json()["parameter"] == "key"
        assert tc.get("/requests", params={"key": bad}).status_code == 400


def test_filter_applies_to_overview_and_costs(client: tuple[TestClient, Monitor]) -> None:
    tc, _ = client
    summary = tc.get(f"/api/summary?key={SEARCH}").json()
    assert summary["requests"] == 1 and summary["cost_usd"] == pytest.approx(0.125)
    assert tc.get(f"/?range=1h&key={SEARCH}").status_code == 200
    costs = tc.get(f"/costs?range=1h&key={SEARCH}").text
    panel = costs[costs.index('id="spend-by-key"') :]
    assert SEARCH[:8] in panel and "billing-service" not in panel.split("</section>")[0]
    assert "All keys" in costs


def test_api_keys(client: tuple[TestClient, Monitor]) -> None:
    tc, _ = client
    data = tc.get("/api/keys?since=2h").json()
    items = data["items"]
    assert [i["key_fingerprint"] for i in items] == [BILLING, SEARCH, HOSTILE]
    assert items[0]["key_name"] == "billing-service" and items[0]["label"] == "billing-service"
    assert items[1]["key_name"] is None and items[1]["label"] == f"sk-ant-api03-…1234 · {SEARCH[:8]}"
    assert items[0]["requests"] == 2 and items[0]["cost_usd"] == pytest.approx(0.75)
    assert data["order"] == "cost" and data["limit"] == 20
    assert tc.get("/api/keys?order=requests&limit=1").json()["items"][0]["key_fingerprint"] == BILLING
    assert tc.get("/api/keys?order=nope").status_code == 400
    assert tc.get("/api/keys?limit=0").status_code == 400


def test_detail_and_api_request(client: tuple[TestClient, Monitor]) -> None:
    tc, monitor = client
    from llm_monitor_mw.store.read import Filters

    items, _ = monitor.store.queries.requests(Filters(key=BILLING), limit=10)
    call = items[0]["id"]
    api = tc.get(f"/api/requests/{call}").json()
    assert (api["key_fingerprint"], api["key_hint"], api["key_name"]) == (BILLING, "sk-proj-…wxyz", "billing-service")
    page = tc.get(f"/requests/{call}").text
    assert "billing-service" in page and BILLING in page and "sk-proj-…wxyz" in page
    (unkeyed,), _ = monitor.store.queries.requests(Filters(since=NOW - 5 * 60 - 1, until=NOW - 5 * 60 + 1), limit=10)
    assert tc.get(f"/api/requests/{unkeyed['id']}").json()["key_fingerprint"] is None


def test_key_names_validated(tmp_path: Path) -> None:
    for bad in ({"zz": "x"}, {"abc": "x"}, {BILLING: ""}, {BILLING: "a\nb"}):
        with pytest.raises(ValueError):
            Monitor(tmp_path / "v.db", key_names=bad)
