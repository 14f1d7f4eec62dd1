"""The htmx dashboard: pages, partials, links under two mount prefixes, exports, escaping, bad parameters."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.queries import Filters
from llm_monitor_mw.web import charts
from tests.browser.server import host_app
from tests.seed import insert as seed

XSS = "<script>alert(1)</script>"
NOW = time.time()
URL_ATTRS = re.compile(r'\s(href|src|action|hx-get|hx-post|hx-put|hx-delete|hx-push-url)="([^"]*)"')
PAGES = ["/", "/requests", "/costs", "/errors"]
FRAGMENTS = [
    "/fragments/overview/kpis",
    "/fragments/overview/charts",
    "/fragments/overview/top",
    "/fragments/requests/table",
    "/fragments/costs/body",
    "/fragments/errors/body",
]
HX = {"HX-Request": "true"}


def rec(minutes_ago: float, **kw: Any) -> CallRecord:
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
        "cached_tokens": 40,
        "cost_usd": 0.002,
        "duration_ms": 100.0 + minutes_ago,
        "route": "/chat",
        "user": "alice",
        "tags": {"feature": "chat"},
        "call_id": f"c{minutes_ago}",
    }
    base.update(kw)
    return CallRecord(**base)


def seed_records() -> list[CallRecord]:
    rows = [rec(i * 7 + 1) for i in range(60)]  # the last 7 hours
    rows += [rec(60 * 30 + i, user="bob", route="/search", tags={"feature": "search"}) for i in range(20)]  # ~30 h ago
    rows += [  # a 429 retried successfully on the same call id
        rec(
            3.0,
            provider="anthropic",
            request_model="claude-haiku-4-5",
            response_model="claude-haiku-4-5",
            status_code=429,
            error_type="rate_limit_error",
            error="slow down",
            call_id="retry-1",
            attempt=1,
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cached_tokens=None,
            cost_usd=None,
        ),
        rec(
            2.9,
            provider="anthropic",
            request_model="claude-haiku-4-5",
            response_model="claude-haiku-4-5",
            call_id="retry-1",
            attempt=2,
            streamed=True,
            ttft_ms=40.0,
            ttlt_ms=90.0,
            duration_ms=95.0,
            request_content='{"messages": [{"role": "user", "content": "hi"}]}',
            response_content="Hello!",
        ),
        rec(4.0, status_code=500, error_type="server_error", error="boom", cost_usd=None),
    ]
    rows.append(  # hostile text everywhere a stored string is shown
        rec(
            5.0,
            request_model=XSS,
            response_model=XSS,
            error=XSS,
            error_type=XSS,
            status_code=400,
            route=XSS,
            user=XSS,
            tags={XSS: XSS, "feature": XSS},
            request_content=XSS,
            response_content=XSS,
            finish_reason=XSS,
            provider="openai",
        )
    )
    return rows


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    global NOW
    NOW = time.time()  # not the import time: the suite may run for minutes before this module's tests do
    monitor = Monitor(tmp_path_factory.mktemp("pages") / "pages.db")
    seed(monitor, seed_records())
    yield monitor
    monitor.close()


@pytest.fixture(scope="module", params=["/monitoring", "/ops/llm"])
def client(request: pytest.FixtureRequest, seeded: Monitor) -> Iterator[tuple[httpx.Client, str]]:
    prefix = request.param
    with TestClient(host_app(seeded, prefix), base_url="http://test") as c:
        yield c, prefix


def urls_in(text: str) -> list[tuple[str, str]]:
    """(attribute, URL) pairs of every link-like attribute, HTML-unescaped."""
    return [(attr, html.unescape(value)) for attr, value in URL_ATTRS.findall(text)]


def row_ids(text: str, prefix: str) -> list[int]:
    return [int(i) for i in re.findall(rf'class="row-link" href="{re.escape(prefix)}/requests/(\d+)', text)]


def total_of(text: str) -> int:
    match = re.search(r"<strong>([\d,]+)</strong> request", text)
    assert match, "no total on the requests page"
    return int(match.group(1).replace(",", ""))


# ---- pages and partials -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_full_pages_and_htmx_partials(client: tuple[httpx.Client, str], path: str) -> None:
    c, prefix = client
    full = c.get(prefix + path)
    assert full.status_code == 200 and full.headers["content-type"].startswith("text/html")
    assert full.text.lstrip().lower().startswith("<!doctype html>")
    assert "HX-Request" in full.headers["vary"]
    part = c.get(prefix + path, headers=HX)
    assert part.status_code == 200 and "HX-Request" in part.headers["vary"]
    assert "<html" not in part.text and "<head" not in part.text
    assert 'id="tabs"' in part.text and 'hx-swap-oob="true"' in part.text  # tabs follow the new range
    # forms leave the address bar to the server: the canonical URL of the view, without empty fields
    pushed = c.get(prefix + path, params={"range": "7d", "provider": "", "model": ""}, headers=HX)
    assert pushed.headers["HX-Push-Url"] == f"{prefix}{path}?range=7d"
    assert c.get(pushed.headers["HX-Push-Url"]).status_code == 200
    restore = c.get(prefix + path, headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text  # history restores get the whole page


@pytest.mark.parametrize("path", FRAGMENTS)
def test_fragments_are_partials_for_htmx_and_pages_otherwise(client: tuple[httpx.Client, str], path: str) -> None:
    c, prefix = client
    part = c.get(prefix + path, headers=HX)
    assert part.status_code == 200 and "HX-Request" in part.headers["vary"]
    assert "<html" not in part.text and part.text.strip()
    direct = c.get(prefix + path)
    assert direct.status_code == 200 and "<html" in direct.text and "HX-Request" in direct.headers["vary"]


def test_detail_page(client: tuple[httpx.Client, str], seeded: Monitor) -> None:
    c, prefix = client
    retry = [r for r in seeded.store.queries.requests(Filters(), limit=1000)[0] if r["call_id"] == "retry-1"]
    second = next(r for r in retry if r["attempt"] == 2)
    first = next(r for r in retry if r["attempt"] == 1)
    page = c.get(f"{prefix}/requests/{second['id']}")
    assert page.status_code == 200 and "HX-Request" in page.headers["vary"]
    text = page.text
    assert "claude-haiku-4-5" in text and "Hello!" in text and "first token" in text.lower()
    assert f'href="{prefix}/requests/{first["id"]}' in text  # the other attempt of the same call
    assert "rate_limit_error" in text and "(this one)" in text
    part = c.get(f"{prefix}/requests/{second['id']}", headers=HX)
    assert "<html" not in part.text and "Hello!" in part.text


@pytest.mark.parametrize(("path", "status"), [("/requests/999999", 404), ("/requests/abc", 400)])
def test_detail_missing_or_malformed(client: tuple[httpx.Client, str], path: str, status: int) -> None:
    c, prefix = client
    response = c.get(prefix + path)
    assert response.status_code == status and "text/html" in response.headers["content-type"]
    assert "Traceback" not in response.text


def test_every_link_follows_the_prefix_and_answers(client: tuple[httpx.Client, str], seeded: Monitor) -> None:
    """Crawl every href/src/action/hx-* URL of every page and partial (one level deep, then check the next)."""
    c, prefix = client
    some_id = seeded.store.queries.requests(Filters(), limit=1)[0][0]["id"]
    sources = [(p, {}) for p in [*PAGES, f"/requests/{some_id}", "/?range=7d", "/requests?status=error&range=7d"]]
    sources += [(p, HX) for p in [*PAGES, *FRAGMENTS]]
    found: dict[str, str] = {}
    for path, headers in sources:
        response = c.get(prefix + path, headers=headers)
        assert response.status_code == 200, path
        for attr, url in urls_in(response.text):
            assert url.startswith(prefix + "/"), (path, attr, url)
            found.setdefault(url, attr)
    assert len(found) > 40, "the crawl found suspiciously few links"
    checked = 0
    for url, attr in sorted(found.items()):
        headers = HX if attr in ("hx-get", "hx-post") else {}
        response = c.get(url, headers=headers)
        assert response.status_code == 200, (attr, url, response.text[:300])
        if response.headers["content-type"].startswith("text/html"):
            for attr2, url2 in urls_in(response.text):
                assert url2.startswith(prefix + "/"), (url, attr2, url2)
        if "HX-Push-Url" in response.headers:
            assert response.headers["HX-Push-Url"].startswith(prefix + "/"), url
        checked += 1
    assert checked == len(found)


def test_static_assets_and_csp_friendly_markup(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    page = c.get(prefix + "/").text
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts and all('src="' in attrs for attrs in scripts), "inline scripts would be blocked by the CSP"
    assert f'src="{prefix}/static/htmx-2.0.11.min.js"' in page
    for path in [*PAGES, *FRAGMENTS]:
        text = c.get(prefix + path).text
        assert " style=" not in text and "hx-on" not in text and "javascript:" not in text, path
    config = json.loads(html.unescape(re.search(r'name="htmx-config" content=\'([^\']+)\'', page).group(1)))
    assert config["allowEval"] is False and config["includeIndicatorStyles"] is False
    htmx_js = c.get(f"{prefix}/static/htmx-2.0.11.min.js")
    assert htmx_js.status_code == 200 and 'version:"2.0.11"' in htmx_js.text
    assert c.get(f"{prefix}/static/app.js").status_code == 200
    assert c.get(f"{prefix}/static/style.css").status_code == 200


def test_regions_poll_and_pause_where_it_makes_sense(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    overview = c.get(prefix + "/").text
    polled = re.findall(
        r'<section id="([\w-]+)" class="region" hx-get="[^"]+" hx-trigger="([^"]+)" data-poll', overview
    )
    assert {p[0] for p in polled} == {"overview-kpis", "overview-charts", "overview-top"}
    assert all(trigger == "every 10s, refresh-now" for _, trigger in polled)
    table = re.compile(r'<section id="requests-table"[^>]*>')
    assert "data-poll" in table.search(c.get(prefix + "/requests").text).group(0)
    paged = c.get(prefix + "/requests", params={"offset": "50", "limit": "25"}).text
    assert "data-poll" not in table.search(paged).group(0)  # paging: still


# ---- parameters -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/", {"range": "2y"}, "range"),
        ("/", {"since": "yesterday"}, "since"),
        ("/costs", {"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ("/errors", {"until": "nan"}, "until"),
        ("/", {"range": "24h", "since": "1h"}, "range"),
        ("/", {"since": "2020-01-01"}, "since"),
        ("/", {"rank": "vibes"}, "rank"),
        ("/requests", {"sort": "id; DROP TABLE calls"}, "sort"),
        ("/requests", {"dir": "sideways"}, "dir"),
        ("/requests", {"limit": "0"}, "limit"),
        ("/requests", {"limit": "100000"}, "limit"),
        ("/requests", {"offset": "-1"}, "offset"),
        ("/requests", {"status": "weird"}, "status"),
        ("/requests", {"tag": "novalue"}, "tag"),
        ("/requests.csv", {"range": "1y"}, "range"),
        ("/requests.json", {"sort": "nope"}, "sort"),
        ("/fragments/requests/table", {"limit": "x"}, "limit"),
        ("/requests/abc", {}, "id"),
    ],
)
def test_bad_parameters_are_a_400_page(
    client: tuple[httpx.Client, str], path: str, params: dict[str, str], parameter: str
) -> None:
    c, prefix = client
    for headers in ({}, HX):
        response = c.get(prefix + path, params=params, headers=headers)
        assert response.status_code == 400, (path, params, response.status_code)
        assert "text/html" in response.headers["content-type"]
        assert f"<code>{parameter}</code>" in response.text and "Traceback" not in response.text


def test_ranges_and_custom_times(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    assert total_of(c.get(prefix + "/requests", params={"range": "1h"}).text) == 13
    assert total_of(c.get(prefix + "/requests").text) == 64  # 24h: not the 20 calls from 30 h ago
    assert total_of(c.get(prefix + "/requests", params={"range": "7d"}).text) == 84
    since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW - 40 * 3600))
    until = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW - 20 * 3600))
    custom = c.get(prefix + "/requests", params={"since": since, "until": until}).text
    assert total_of(custom) == 20 and "→" in custom  # the picker shows the custom range
    for r in ("15m", "1h", "6h", "24h", "7d", "30d", "90d"):
        assert c.get(prefix + "/", params={"range": r}).status_code == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"provider": "anthropic"}, 2),
        ({"status": "error"}, 3),
        ({"status": "ok"}, 61),
        ({"model": "claude-haiku-4-5"}, 2),
        ({"user": "alice"}, 63),
        ({"route": "/chat"}, 63),
        ({"tag": "feature:chat"}, 63),
        ({"q": "slow"}, 1),
        ({"q": "server_err"}, 1),
        ({"provider": "anthropic", "status": "ok"}, 1),
        ({"range": "7d", "user": "bob"}, 20),
        ({"range": "7d", "tag": "feature:search"}, 20),
    ],
)
def test_filters_and_exports_agree(client: tuple[httpx.Client, str], params: dict[str, str], expected: int) -> None:
    c, prefix = client
    page = c.get(prefix + "/requests", params=params)
    assert total_of(page.text) == expected
    rows = list(csv.DictReader(io.StringIO(c.get(prefix + "/requests.csv", params=params).text)))
    items = c.get(prefix + "/requests.json", params=params).json()
    assert len(rows) == len(items) == expected
    assert [int(r["id"]) for r in rows] == [i["id"] for i in items]
    assert row_ids(page.text, prefix) == [i["id"] for i in items][:50]
    if "provider" in params:
        assert {i["provider"] for i in items} == {params["provider"]}
    if params.get("status") == "error":
        assert not any(i["ok"] for i in items)


def test_export_headers_and_formats(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    response = c.get(prefix + "/requests.csv", params={"range": "7d"})
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    header = next(csv.reader(io.StringIO(response.text)))
    assert header[:3] == ["id", "started_at", "provider"]
    items = c.get(prefix + "/requests.json", params={"range": "7d"}).json()
    assert items[0]["started_at"].endswith("Z") and isinstance(items[0]["tags"], dict)
    hostile = next(i for i in items if i["model"] == XSS)
    assert hostile["tags"][XSS] == XSS  # exported as stored: JSON is data, not HTML


def test_csv_cells_never_start_a_formula(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "csv.db")
    seed(monitor, [rec(1, error='=HYPERLINK("http://evil")', error_type="+cmd", status_code=500)])
    with TestClient(host_app(monitor, "/m")) as c:
        row = next(csv.DictReader(io.StringIO(c.get("/m/requests.csv").text)))
    assert row["error"].startswith("'=") and row["error_type"] == "'+cmd"
    monitor.close()


def test_sorting_and_paging(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    items = c.get(prefix + "/requests.json", params={"range": "7d", "sort": "duration", "dir": "asc"}).json()
    durations = [i["duration_ms"] for i in items]
    assert durations == sorted(durations)
    page = c.get(prefix + "/requests", params={"range": "7d", "sort": "duration", "dir": "asc", "limit": "25"})
    assert row_ids(page.text, prefix) == [i["id"] for i in items[:25]]
    assert 'aria-sort="ascending"' in page.text
    seen: list[int] = []
    for offset in range(0, 100, 25):
        text = c.get(prefix + "/requests", params={"range": "7d", "limit": "25", "offset": str(offset)}).text
        seen += row_ids(text, prefix)
    assert len(seen) == len(set(seen)) == 84
    by_cost = c.get(prefix + "/requests.json", params={"range": "7d", "sort": "cost"}).json()
    costs = [i["cost_usd"] for i in by_cost]
    known = [x for x in costs if x is not None]
    assert known == sorted(known, reverse=True) and costs[-1] is None  # unknown cost last, whatever the direction


# ---- escaping ---------------------------------------------------------------------------------------------------


def test_stored_text_is_escaped_everywhere(client: tuple[httpx.Client, str], seeded: Monitor) -> None:
    c, prefix = client
    hostile = next(r for r in seeded.store.queries.requests(Filters(), limit=1000)[0] if r["model"] == XSS)
    paths = [*PAGES, *FRAGMENTS, f"/requests/{hostile['id']}", "/requests?status=error", "/?rank=requests"]
    escaped = html.escape(XSS, quote=False)
    shown = 0
    for path in paths:
        for headers in ({}, HX):
            text = c.get(prefix + path, headers=headers).text
            assert XSS not in text and "<script>alert" not in text, path
            shown += text.count(escaped)
    detail = c.get(f"{prefix}/requests/{hostile['id']}").text
    assert detail.count(escaped) >= 6  # model, error, error type, tags, route, user, content
    assert shown > 20


def test_chart_labels_are_escaped() -> None:
    svg = str(charts.time_chart([0, 60], [charts.Series(XSS, [1, None], XSS)], step=60, label=XSS))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<script>" not in str(charts.legend([charts.Series(XSS, [1])]))
    assert "<script>" not in str(charts.share_bar(0.5, XSS))


# ---- empty states -----------------------------------------------------------------------------------------------


def test_empty_database_shows_how_to_start(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "empty.db")
    with TestClient(host_app(monitor, "/m")) as c:
        for path in [*PAGES, *FRAGMENTS]:
            response = c.get("/m" + path)
            assert response.status_code == 200, path
        assert "monitor.transport()" in c.get("/m/").text
        assert "monitor.transport()" in c.get("/m/requests").text
        assert c.get("/m/requests.json").json() == []
    monitor.close()


def test_empty_range_suggests_a_longer_one(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    text = c.get(prefix + "/", params={"range": "15m", "provider": "nobody"}).text
    assert "No calls" in text and "Try a longer range" in text


def test_new_calls_show_up_on_the_next_refresh(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "live.db")
    seed(monitor, [rec(1), rec(2)])
    with TestClient(host_app(monitor, "/m")) as c:
        assert total_of(c.get("/m/requests").text) == 2
        first = c.get("/m/fragments/overview/kpis", headers=HX).text
        assert re.search(r'kpi-value">2<', first)
        seed(monitor, [rec(0.5), rec(0.2), rec(3)])
        assert re.search(r'kpi-value">5<', c.get("/m/fragments/overview/kpis", headers=HX).text)
        assert total_of(c.get("/m/requests").text) == 5
    monitor.close()


# ---- formatting -------------------------------------------------------------------------------------------------


def test_number_formatting() -> None:
    assert charts.fmt_int(12345.4) == "12,345" and charts.fmt_int(None) == "—"
    assert charts.fmt_compact(950) == "950" and charts.fmt_compact(12_345) == "12.3k"
    assert charts.fmt_compact(4_560_000) == "4.56M"
    assert charts.fmt_ms(0) == "0 ms" and charts.fmt_ms(840.2) == "840 ms" and charts.fmt_ms(1240) == "1.24 s"
    assert charts.fmt_usd(0.0042) == "$0.0042" and charts.fmt_usd(1.234) == "$1.23" and charts.fmt_usd(1234) == "$1.23k"
    assert charts.fmt_pct(0.0312) == "3.1 %" and charts.fmt_pct(0.0001) == "0.01 %"
    assert charts.fmt_span(86400) == "24 hours" and charts.fmt_span(7 * 86400) == "7 days"
    assert charts.nice_ticks(87) == [0, 25, 50, 75, 100]
    assert charts.nice_ticks(0) == [0.0, 1.0]


def test_query_strings_round_trip(client: tuple[httpx.Client, str]) -> None:
    c, prefix = client
    params = {
        "range": "7d",
        "provider": "openai",
        "status": "error",
        "tag": "feature:chat",
        "sort": "cost",
        "dir": "asc",
        "limit": "25",
    }
    text = c.get(prefix + "/requests", params=params).text
    sort_links = [u for a, u in urls_in(text) if a == "href" and "sort=duration" in u]
    assert sort_links
    query = {k: v[0] for k, v in parse_qs(urlsplit(sort_links[0]).query).items()}
    assert query == {**params, "sort": "duration", "dir": "desc"}  # filters kept, sort changed, offset reset
