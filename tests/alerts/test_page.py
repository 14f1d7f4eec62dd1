"""The Alerts page: empty state, firing alerts, budgets, history, escaping, links under any prefix, and the
Acknowledge POST behind the CSRF check (and auth)."""

from __future__ import annotations

import base64
import html
import re
import time
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from llm_monitor_mw import BasicAuth, Budget, Monitor, Rule
from llm_monitor_mw.record import CallRecord
from tests.browser.server import host_app
from tests.seed import insert as seed

XSS = "<script>alert(1)</script>"
NOW = time.time()
HX = {"HX-Request": "true"}
URL_ATTRS = re.compile(r'\s(href|src|action|hx-get|hx-post|hx-push-url)="([^"]*)"')
ACK = re.compile(r'action="([^"]+/alerts/(\d+)/acknowledge)"')


def call(seconds_ago: float, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": NOW - seconds_ago,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "response_model": "gpt-4o-mini",
        "status_code": 200,
        "cost_usd": 1.0,
    }
    base.update(kw)
    return CallRecord(**base)


def configure(monitor: Monitor) -> None:
    seed(monitor, [call(10, status_code=500, error_type="server_error", user=XSS, cost_usd=4.0) for _ in range(3)])
    alerts = monitor.alerts
    alerts.add_rule(Rule(XSS, "error_rate", 0.5, severity="critical", scope={"user": XSS}))
    alerts.add_rule(Rule("quiet", "requests", 100, op=">"))
    alerts.add_budget(Budget("per user", 10.0, scope={"user": "*"}, hard=True))
    alerts.add_budget(Budget("monthly", 1000.0, period="month"))
    assert {e.event for e in alerts.evaluate_now()} == {"fired", "exceeded"}


def urls_in(text: str) -> list[tuple[str, str]]:
    return [(attr, html.unescape(value)) for attr, value in URL_ATTRS.findall(text)]


@pytest.mark.parametrize("prefix", ["/monitoring", "/ops/llm"])
def test_empty_state_when_nothing_is_configured(monitor: Monitor, prefix: str) -> None:
    client = TestClient(host_app(monitor, prefix))
    page = client.get(f"{prefix}/alerts")
    assert page.status_code == 200 and page.text.lstrip().lower().startswith("<!doctype html>")
    assert "No alert rules or budgets configured" in page.text and "monitor.alerts.add_rule" in page.text
    assert f'href="{prefix}/alerts" aria-current="page"' in page.text
    part = client.get(f"{prefix}/alerts", headers=HX)
    assert "<html" not in part.text and "No alert rules or budgets configured" in part.text
    assert 'hx-swap-oob="true"' in part.text and "HX-Request" in part.headers["vary"]
    assert f'href="{prefix}/alerts"' in client.get(f"{prefix}/").text  # the nav link on every page


@pytest.mark.parametrize("prefix", ["/monitoring", "/ops/llm"])
def test_firing_budgets_history_escaped_and_linked_under_the_prefix(monitor: Monitor, prefix: str) -> None:
    configure(monitor)
    client = TestClient(host_app(monitor, prefix))
    text = client.get(f"{prefix}/alerts").text
    assert XSS not in text and html.escape(XSS) in text
    firing = text[text.index("<h2>Firing</h2>") : text.index("<h2>Budgets</h2>")]
    assert firing.count("Acknowledge</button>") == 2 and "critical" in firing and "exceeded" in firing
    budgets = text[text.index("<h2>Budgets</h2>") : text.index("<h2>Rules</h2>")]
    assert "$12.00" in budgets and "$10.00" in budgets and "120 %" in budgets  # the per-user spend of XSS
    assert "$1k" in budgets and ">hard<" in budgets
    rules = text[text.index("<h2>Rules</h2>") : text.index("<h2>History</h2>")]
    assert "requests &gt; 100 over 5m (all calls)" in rules
    history = text[text.index("<h2>History</h2>") :]
    assert history.count('<span class="badge err">fired</span>') == 1
    assert history.count('<span class="badge err">exceeded</span>') == 1
    for attr, url in urls_in(text):
        assert url.startswith(prefix + "/"), (attr, url)
        if attr in ("href", "src", "hx-get"):
            assert client.get(url, headers=HX if attr == "hx-get" else {}).status_code == 200, url
    region = client.get(f"{prefix}/fragments/alerts/body", headers=HX)
    assert region.status_code == 200 and "<html" not in region.text and "<h2>Firing</h2>" in region.text
    assert "<html" in client.get(f"{prefix}/fragments/alerts/body").text  # loaded directly: the whole page
    polled = re.search(
        r'<section id="alerts-body" class="region" hx-get="([^"]+)" hx-trigger="([^"]+)" data-poll', text
    )
    assert polled is not None and polled.groups() == (f"{prefix}/fragments/alerts/body", "every 10s, refresh-now")


def test_acknowledge_needs_a_same_origin_post(monitor: Monitor) -> None:
    configure(monitor)
    app = FastAPI()
    app.mount("/admin/llm", monitor.asgi_app(auth=BasicAuth("admin", "pw")))
    client = TestClient(app, base_url="http://testserver")
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    page = client.get("/admin/llm/alerts", headers=auth).text
    (first_url, first_id), (second_url, second_id) = ACK.findall(page)
    assert f'hx-post="{first_url}"' in page and first_url == f"/admin/llm/alerts/{first_id}/acknowledge"

    assert client.post(first_url).status_code == 401  # auth covers the POST too
    for hostile in (
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
    ):
        assert client.post(first_url, headers={**auth, **hostile}).status_code == 403
    assert all(row.acked_at is None for row in monitor.alerts.active())
    assert client.get(first_url, headers=auth).status_code == 405

    done = client.post(first_url, headers={**auth, "sec-fetch-site": "same-origin"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/admin/llm/alerts"
    acked = {row.id: row for row in monitor.alerts.active()}
    assert acked[int(first_id)].acked_by == "admin" and acked[int(second_id)].acked_at is None
    region = client.post(second_url, headers={**auth, **HX, "origin": "http://testserver"})
    assert region.status_code == 200 and "<html" not in region.text and "<h2>Firing</h2>" in region.text
    assert "Acknowledge</button>" not in region.text and region.text.count(" by admin") == 2
    again = client.post(first_url, headers={**auth, "sec-fetch-site": "same-origin"}, follow_redirects=False)
    assert again.status_code == 303  # nothing left to acknowledge: no second event
    assert [e.event for e in monitor.alerts.history()].count("acknowledged") == 2
    bad = client.post("/admin/llm/alerts/abc/acknowledge", headers={**auth, "sec-fetch-site": "same-origin"})
    assert bad.status_code == 400 and "not an alert id" in bad.text
