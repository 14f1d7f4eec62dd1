"""Honest pages: unknown is never shown as zero, the unpriced notice names models with tokens but no price,
projections say so, grids fit their items, the top bar's alerts badge, alert values in their unit, and the
request detail's attempts (milliseconds, back-off), tool calls and trace/session links."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor, Rule
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.queries import Filters
from llm_monitor_mw.web.alerts import metric_value
from llm_monitor_mw.web.unknown import cost_reason, tokens_reason
from tests.browser.server import host_app
from tests.seed import insert

HX = {"HX-Request": "true"}
PREFIX = "/ops/llm"
HOSTILE = '<script>alert(1)</script>/../"x'


def rec(seconds_ago: float, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": time.time() - seconds_ago,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "status_code": 200,
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cost_usd": 0.0000036,
        "duration_ms": 250.0,
        "call_id": f"call-{seconds_ago}",
    }
    base.update(kw)
    return CallRecord(**base)


def records() -> list[CallRecord]:
    no_usage = {"input_tokens": None, "output_tokens": None, "total_tokens": None, "cost_usd": None}
    return [
        *(rec(600 + i, route="/chat") for i in range(10)),
        rec(60, call_id="no-usage", streamed=True, ttft_ms=90.0, **no_usage),  # a stream without usage
        rec(70, call_id="mystery-a", request_model="mystery-1", response_model="mystery-1", cost_usd=None, route="/x"),
        rec(71, call_id="mystery-b", request_model="mystery-1", response_model="mystery-1", cost_usd=None, route="/x"),
        rec(80, call_id="failed-early", status_code=None, error_type="timeout", error="ReadTimeout", **no_usage),
        rec(90, call_id="failed-429", status_code=429, error_type="rate_limit_error", **no_usage),
        rec(91, call_id="failed-500", status_code=500, error_type="server_error", **no_usage),
        # one call, three attempts: 429 (120 ms), back-off 1.02 s, 529 (80 ms), back-off 2.2795 s, success
        rec(
            300,
            call_id="retried",
            attempt=1,
            status_code=429,
            error_type="rate_limit_error",
            duration_ms=120.0,
            **no_usage,
        ),
        rec(300 - 1.14, call_id="retried", attempt=2, status_code=529, duration_ms=80.0, **no_usage),
        rec(300 - 3.5, call_id="retried", attempt=3, duration_ms=900.0),
        rec(
            40,
            call_id="tools",
            tool_call_count=2,
            tool_names=["get_weather", "lookup_order"],
            tool_arguments=json.dumps(
                [
                    {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                    {"name": "lookup_order", "arguments": {"id": 4411}},
                ]
            ),
            trace_id="run-7f3a",
            trace_name="refund agent",
            span_name="plan / act",
            tags={"session": "conv 42/a"},
        ),
        rec(30, call_id="hostile-trace", trace_id=HOSTILE, tags={"session": HOSTILE}),
    ]


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    mon = Monitor(tmp_path_factory.mktemp("honest") / "honest.db")
    insert(mon, records())
    yield mon
    mon.close()


@pytest.fixture(scope="module")
def client(monitor: Monitor) -> Iterator[httpx.Client]:
    with TestClient(host_app(monitor, PREFIX), base_url="http://test") as c:
        yield c  # type: ignore[misc]


def row_of(monitor: Monitor, call_id: str, attempt: int | None = None) -> dict[str, Any]:
    rows = monitor.store.queries.requests(Filters(), limit=1000)[0]
    return next(r for r in rows if r["call_id"] == call_id and (attempt is None or r["attempt"] == attempt))


def table_row(text: str, call_pk: int) -> str:
    """The requests log's ``<tr>`` of call ``call_pk``."""
    match = re.search(
        rf'<tr[^>]*>\s*<td[^>]*><a class="row-link" href="{PREFIX}/requests/{call_pk}[?"].*?</tr>', text, re.S
    )
    assert match, f"no row for {call_pk}"
    return match.group(0)


def unknown_titles(fragment: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<span class="unknown" title="([^"]*)">—</span>', fragment)]


# ---- why a value is unknown --------------------------------------------------------------------------------------


def test_reasons() -> None:
    ok = {"status_code": 200, "ok": True, "model": "gpt-x", "input_tokens": 3, "output_tokens": 1, "cost_usd": 1e-6}
    assert cost_reason(ok) is None and tokens_reason(ok) is None
    assert cost_reason({**ok, "cost_usd": None}) == "no price for gpt-x"
    assert cost_reason({**ok, "cost_usd": None, "model": None}) == "no price: the model is unknown"
    blank = {**ok, "input_tokens": None, "output_tokens": None, "cost_usd": None}
    assert cost_reason(blank) == tokens_reason(blank) == "no usage reported"
    assert "stream" in str(cost_reason({**blank, "streamed": True}))
    assert cost_reason({**blank, "status_code": None, "ok": False}) == "failed before a response"
    assert tokens_reason({**blank, "status_code": 429, "ok": False}) == "failed with HTTP 429: no usage reported"
    assert tokens_reason({**ok, "output_tokens": None}, "output_tokens") == "not reported by the provider"
    assert cost_reason({"cost_usd": 0.0}) is None  # zero is a price, not an unknown


def test_unknown_is_never_zero_on_the_requests_log(client: httpx.Client, monitor: Monitor) -> None:
    text = client.get(PREFIX + "/requests").text
    cases = {
        "no-usage": "no usage reported",
        "failed-early": "failed before a response",
        "failed-429": "failed with HTTP 429",
        "mystery-a": "no price for mystery-1",
    }
    for call_id, reason in cases.items():
        row = table_row(text, row_of(monitor, call_id)["id"])
        titles = unknown_titles(row)
        assert titles and all(reason in t or "not streamed" in t for t in titles), (call_id, titles)
        assert "$0<" not in row and ">0<" not in row, call_id  # never a zero for an unknown
    priced = table_row(text, row_of(monitor, "call-600")["id"])
    assert "$0.0000036" in priced and "100" in priced  # known values as they are, by significant figures
    mystery = table_row(text, row_of(monitor, "mystery-a")["id"])
    assert ">100<" in mystery and ">20<" in mystery  # its tokens are known; only the cost is not


def test_unknown_on_the_detail_page(client: httpx.Client, monitor: Monitor) -> None:
    text = client.get(f"{PREFIX}/requests/{row_of(monitor, 'no-usage')['id']}").text
    titles = unknown_titles(text)
    assert sum("no usage reported" in t for t in titles) >= 4  # input, output, total, cost
    assert "unknown</dd>" not in text and "$0.000000" not in text
    mystery = client.get(f"{PREFIX}/requests/{row_of(monitor, 'mystery-a')['id']}").text
    assert "no price for mystery-1" in mystery
    priced = client.get(f"{PREFIX}/requests/{row_of(monitor, 'call-600')['id']}").text
    assert "$0.0000036" in priced


def test_tops_show_unknown_cost_for_unpriced_models(client: httpx.Client) -> None:
    top = client.get(PREFIX + "/fragments/overview/top", params={"rank": "requests"}, headers=HX).text
    models = top[top.index("<h3>Models</h3>") : top.index("<h3>Providers</h3>")]
    mystery = re.search(r"mystery-1.*?</tr>", models, re.S)
    assert mystery and '<span class="unknown"' in mystery.group(0) and "$0<" not in mystery.group(0)


def test_tops_show_unknown_cost_for_routes_with_no_priced_call(client: httpx.Client, monitor: Monitor) -> None:
    top = client.get(PREFIX + "/fragments/overview/top", params={"rank": "requests"}, headers=HX).text
    routes = top[top.index("<h3>Routes</h3>") : top.index("<h3>Users</h3>")]
    unpriced = re.search(r">/x<.*?</tr>", routes, re.S)
    assert unpriced and '<span class="unknown" title="no priced calls">' in unpriced.group(0)
    assert "$0<" not in unpriced.group(0)
    priced = re.search(r">/chat<.*?</tr>", routes, re.S)
    assert priced and "$0.000036<" in priced.group(0)  # ten calls of $0.0000036
    rows = monitor.store.analytics.by_dim(
        Filters(since=time.time() - 3600, until=time.time() + 60), "route", order="requests"
    )
    assert {r["value"]: r["cost_usd"] for r in rows} == {"/chat": pytest.approx(0.000036), "/x": None}


# ---- the unpriced notice and projections -------------------------------------------------------------------------


def test_unpriced_notice_counts_only_calls_with_tokens_and_names_models(client: httpx.Client) -> None:
    body = client.get(PREFIX + "/costs").text
    notice = re.search(r'<p class="notice unpriced">(.*?)</p>', body, re.S)
    assert notice, "no unpriced notice"
    text = html.unescape(notice.group(1))
    assert text.startswith("2 of ") and "mystery-1 (2)" in text  # not the failed calls without tokens
    assert "gpt-4o-mini" not in text
    kpis = client.get(PREFIX + "/fragments/overview/kpis", headers=HX).text
    assert "mystery-1" in kpis and "2 unpriced" in kpis


def test_no_unpriced_notice_when_every_call_with_tokens_is_priced(tmp_path: Path) -> None:
    mon = Monitor(tmp_path / "priced.db")
    insert(mon, [rec(60), rec(61, status_code=500, input_tokens=None, output_tokens=None, cost_usd=None)])
    with TestClient(host_app(mon, "/m")) as c:
        body = c.get("/m/costs").text
        assert "notice unpriced" not in body and "no price" not in body
        assert "unpriced" not in c.get("/m/fragments/overview/kpis", headers=HX).text
    mon.close()


@pytest.mark.parametrize(
    ("range_", "label", "absent"),
    [
        ("1h", "Projected per day", "Average per day"),
        ("15m", "Projected per day", "Average per day"),
        ("24h", "Average per day", "Projected"),
        ("7d", "Average per day", "Projected"),
    ],
)
def test_per_day_is_labelled_a_projection_under_a_day(
    client: httpx.Client, range_: str, label: str, absent: str
) -> None:
    body = client.get(PREFIX + "/fragments/costs/body", params={"range": range_}, headers=HX).text
    assert f'<div class="kpi-label">{label}</div>' in body and absent not in body
    assert '<div class="kpi-label">Per day</div>' not in body
    if label.startswith("Projected"):
        assert "scaled to 24 hours" in body


def test_per_day_projection_is_the_spend_scaled(monitor: Monitor, client: httpx.Client) -> None:
    body = client.get(PREFIX + "/fragments/costs/body", params={"range": "1h"}, headers=HX).text
    values = dict(re.findall(r'kpi-label">([^<]+)</div>\s*<div class="kpi-value">([^<]+)<', body))
    spend = sum(
        r["cost_usd"] or 0 for r in monitor.store.queries.requests(Filters(since=time.time() - 3600), limit=1000)[0]
    )
    assert values["Spend"] != "—"
    assert values["Projected per day"].startswith("$0.00") and spend > 0
    assert float(values["Projected per day"].lstrip("$")) == pytest.approx(spend * 24, rel=0.05)


# ---- grids -------------------------------------------------------------------------------------------------------


class GridCounter(HTMLParser):
    """Direct children of every element whose class has ``grid-N``."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "source", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, int | None]] = []
        self.grids: list[list[int]] = []  # [declared N, children]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stack and self.stack[-1][1] is not None:
            self.grids[self.stack[-1][1]][1] += 1
        classes = (dict(attrs).get("class") or "").split()
        n = next((int(c[5:]) for c in classes if re.fullmatch(r"grid-\d+", c)), None)
        index = None
        if n is not None:
            self.grids.append([n, 0])
            index = len(self.grids) - 1
        if tag not in self.VOID:
            self.stack.append((tag, index))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stack and self.stack[-1][1] is not None:
            self.grids[self.stack[-1][1]][1] += 1

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


@pytest.mark.parametrize("path", ["/costs", "/errors", "/", "/requests/{pk}"])
def test_grids_are_sized_to_their_items(client: httpx.Client, monitor: Monitor, path: str) -> None:
    text = client.get(PREFIX + path.format(pk=row_of(monitor, "tools")["id"])).text
    parser = GridCounter()
    parser.feed(text)
    assert parser.grids, "no sized grid on the page"
    for declared, children in parser.grids:
        assert declared == children, (path, parser.grids)
    css = client.get(PREFIX + "/static/style.css").text
    for declared, _ in parser.grids:
        assert re.search(rf"\.grid-{declared}\b", css), f"no CSS for grid-{declared}"


# ---- the alerts badge and alert values ---------------------------------------------------------------------------


def badge(text: str) -> str:
    match = re.search(r'<span id="alerts-link".*?</span>\s*</span>|<span id="alerts-link".*?</a>\s*</span>', text, re.S)
    assert match, "no alerts link"
    return match.group(0)


def firing_count(text: str) -> int | None:
    match = re.search(r'class="alert-count">(?:<span[^>]*>[^<]*</span>)?(\d+)', badge(text))
    return int(match.group(1)) if match else None


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "alerting.db")
    insert(mon, records())
    mon.alerts.add_rule(Rule("errors", "error_rate", 0.05, window="1h"))
    mon.alerts.add_rule(Rule("slow", "latency_p95_ms", 100, window="1h"))
    mon.alerts.add_rule(Rule("quiet", "requests", 10**6, window="1h"))  # never fires
    mon.alerts.evaluate_now()
    yield mon
    mon.close()


def test_badge_counts_firing_alerts_on_every_page(alerting: Monitor) -> None:
    some_id = row_of(alerting, "tools")["id"]
    with TestClient(host_app(alerting, PREFIX)) as c:
        for path in ["/", "/requests", "/traces", "/costs", "/errors", "/alerts", f"/requests/{some_id}"]:
            response = c.get(PREFIX + path)
            assert response.status_code == 200, path
            assert firing_count(response.text) == 2, path
            assert f'href="{PREFIX}/alerts"' in badge(response.text)
            part = c.get(PREFIX + path, headers=HX).text  # a content swap refreshes the badge out of band
            assert 'id="alerts-link"' in part and 'hx-swap-oob="true"' in badge(part) and firing_count(part) == 2
        polled = c.get(PREFIX + "/fragments/alerts/badge", headers=HX)
        assert polled.status_code == 200 and "<html" not in polled.text and firing_count(polled.text) == 2
        assert "<html" in c.get(PREFIX + "/fragments/alerts/badge").text  # loaded directly: the Alerts page
        active = alerting.alerts.active()
        alerting.alerts.acknowledge(active[0].id)
        acked = c.get(PREFIX + "/fragments/alerts/badge", headers=HX).text
        assert firing_count(acked) == 2 and "1 acknowledged" in acked


def test_no_badge_count_when_nothing_fires(client: httpx.Client) -> None:
    text = client.get(PREFIX + "/").text
    assert 'id="alerts-link"' in text and firing_count(text) is None


def test_badge_never_fails_the_page(tmp_path: Path) -> None:
    mon = Monitor(tmp_path / "broken.db")
    insert(mon, [rec(60)])
    mon.store.alerts.ensure()
    with sqlite3.connect(tmp_path / "broken.db") as conn:  # a real database error: the table is gone
        conn.execute("DROP TABLE alert_state")
    with TestClient(host_app(mon, "/m")) as c:
        for path in ["/", "/requests", "/costs"]:
            response = c.get("/m" + path)
            assert response.status_code == 200, path
            assert 'href="/m/alerts"' in response.text and "alert-count" not in response.text
    mon.close()


def test_alert_values_in_their_unit(alerting: Monitor) -> None:
    with TestClient(host_app(alerting, PREFIX)) as c:
        text = c.get(PREFIX + "/alerts").text
    firing = text[text.index("<h2>Firing</h2>") : text.index("<h2>Budgets</h2>")]
    cells = re.findall(r'<td class="num">([^<]*)</td>', firing)
    assert "5 %" in cells  # the error_rate threshold 0.05
    assert "100 ms" in cells  # the latency threshold
    assert any(re.fullmatch(r"\d+(\.\d+)? %", v) for v in cells if v != "5 %")  # the error rate value
    assert not any(re.fullmatch(r"0\.\d+", v) for v in cells), cells  # no raw fraction
    history = text[text.index("<h2>History</h2>") :]
    assert "5 %" in history and "100 ms" in history


def test_metric_value() -> None:
    assert metric_value("error_rate", 0.07285) == "7.3 %"
    assert metric_value("cost_usd", 0.0000036) == "$0.0000036"
    assert metric_value("latency_p95_ms", 840.0) == "840 ms"
    assert metric_value("ttft_p95_ms", 1240.0) == "1.24 s"
    assert metric_value("requests", 12.0) == "12"
    assert metric_value("error_rate", None) == "—"
    assert metric_value("something_new", 0.1234567) == "0.1235"


def test_alerts_code_sample_imports_what_it_uses(tmp_path: Path) -> None:
    mon = Monitor(tmp_path / "empty.db")
    with TestClient(host_app(mon, "/m")) as c:
        text = html.unescape(c.get("/m/alerts").text)
    sample = re.search(r'<pre class="code"><code>(.*?)</code></pre>', text, re.S)
    assert sample and sample.group(1).startswith("import os\n") and "os.environ" in sample.group(1)
    compile(sample.group(1), "sample", "exec")  # valid Python
    mon.close()


# ---- the request detail ------------------------------------------------------------------------------------------


def test_attempts_show_milliseconds_and_back_off(client: httpx.Client, monitor: Monitor) -> None:
    third = row_of(monitor, "retried", 3)
    text = html.unescape(client.get(f"{PREFIX}/requests/{third['id']}").text)
    attempts = text[text.index("Attempts of this call") :]
    stamps = re.findall(r"\d\d:\d\d:\d\d\.\d{3}", attempts)
    assert len(stamps) == 3
    assert "+1.02 s after attempt 1" in attempts  # 1.14 s after the start, minus the 120 ms the first took
    assert "+2.28 s after attempt 2" in attempts
    assert "first attempt" in attempts
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} UTC", text)  # the call's own start, to the millisecond


def test_tool_calls_on_the_detail_page(client: httpx.Client, monitor: Monitor) -> None:
    row = row_of(monitor, "tools")
    text = client.get(f"{PREFIX}/requests/{row['id']}").text
    assert "Tool calls the model asked for" in text
    assert "<code>get_weather</code>" in text and "<code>lookup_order</code>" in text
    assert '"city": "Lisbon"' in html.unescape(text) and '"id": 4411' in html.unescape(text)
    assert f'href="{PREFIX}/requests?tool=get_weather' in html.unescape(text)  # filter by the tool
    listing = client.get(PREFIX + "/requests").text
    assert ">2 tools<" in table_row(listing, row["id"])
    plain = client.get(f"{PREFIX}/requests/{row_of(monitor, 'call-600')['id']}").text
    assert "Tool calls the model asked for" not in plain


def test_the_requests_log_filters_by_tool_from_its_form(client: httpx.Client, monitor: Monitor) -> None:
    text = client.get(PREFIX + "/requests?tool=get_weather").text
    assert re.search(r'<input name="tool" value="get_weather"', text)  # the form shows the filter it applied
    assert table_row(text, row_of(monitor, "tools")["id"])
    plain = row_of(monitor, "call-600")["id"]  # a call that asked for no tools
    assert not re.search(rf'href="{PREFIX}/requests/{plain}[?"]', text)
    assert table_row(client.get(PREFIX + "/requests").text, plain)
    assert '<input name="tool" value=""' in client.get(PREFIX + "/requests").text


def test_tool_kpi_on_the_overview(client: httpx.Client) -> None:
    kpis = client.get(PREFIX + "/fragments/overview/kpis", headers=HX).text
    assert "1 asked for tools" in kpis


def test_trace_and_session_links(client: httpx.Client, monitor: Monitor) -> None:
    text = html.unescape(client.get(f"{PREFIX}/requests/{row_of(monitor, 'tools')['id']}").text)
    assert f'href="{PREFIX}/traces/run-7f3a' in text and "refund agent" in text and "plan / act" in text
    assert f'href="{PREFIX}/sessions/conv%2042%2Fa' in text
    assert client.get(f"{PREFIX}/traces/run-7f3a").status_code == 200
    plain = client.get(f"{PREFIX}/requests/{row_of(monitor, 'call-600')['id']}").text
    assert "View trace" not in plain and "View session" not in plain


def test_hostile_trace_and_session_ids_are_quoted_and_escaped(client: httpx.Client, monitor: Monitor) -> None:
    text = client.get(f"{PREFIX}/requests/{row_of(monitor, 'hostile-trace')['id']}").text
    assert "<script>alert(1)" not in text
    links = re.findall(rf'href="{PREFIX}/(traces|sessions)/([^"?]*)', text)
    assert {kind for kind, _ in links} == {"traces", "sessions"}
    assert all("/" not in path and "<" not in path and '"' not in path for _, path in links)


def test_tabs_include_traces(client: httpx.Client) -> None:
    tabs = re.search(r'<nav class="tabs".*?</nav>', client.get(PREFIX + "/").text, re.S)
    assert tabs
    labels = re.findall(r'class="tab[^"]*" href="[^"]*"[^>]*>([^<]+)</a>', tabs.group(0))
    assert labels == ["Overview", "Requests", "Traces", "Costs", "Errors"]
