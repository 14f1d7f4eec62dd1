"""The traces pages (list, one trace, one session) and their partials, mounted in FastAPI, Starlette and Flask
under two prefixes: full pages and htmx partials, every link resolving, sorting, filtering, paging, escaping, the
waterfall, 400s for bad parameters and 404s for unknown ids."""

from __future__ import annotations

import html
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client as WerkzeugClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.read import Filters
from llm_monitor_mw.web import charts
from llm_monitor_mw.web.waterfall import MAX_ROWS as WATERFALL_ROWS
from llm_monitor_mw.web.waterfall import ticks_for, waterfall
from tests.seed import insert

XSS = "<script>alert(1)</script>"
NOW = time.time()
HX = {"HX-Request": "true"}
URL_ATTRS = re.compile(r'\s(href|src|action|hx-get|hx-post|hx-put|hx-delete|hx-push-url)="([^"]*)"')

AGENT = "req-agent-1"
"""An inbound request's trace: three calls (one retried, one asking for tools), in session conv-1."""
DIGEST = "7f3c9e0d2b1a4c5e8f90a1b2c3d4e5f6"
"""A ``monitor.trace("nightly-digest")`` run: one expensive, slow call, in session conv-1."""
ODD = "batch/7 <b>&?#"
"""A trace id that needs percent-encoding in a path (slash, space, markup, query and fragment characters)."""
OLD = "req-old"
"""A trace from 30 hours ago (outside the default 24 h range)."""


def rec(seconds_ago: float, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": NOW - seconds_ago,
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
        "duration_ms": 400.0,
        "call_id": f"c{seconds_ago}",
        "tool_call_count": 0,
    }
    base.update(kw)
    return CallRecord(**base)


def agent_calls(start: float) -> list[CallRecord]:
    common: dict[str, Any] = {
        "trace_id": AGENT,
        "inbound_request_id": AGENT,
        "inbound_method": "POST",
        "route": "/agents/{agent_id}/run",
        "user": "alice",
        "tags": {"session": "conv-1", "feature": "agent"},
    }
    return [
        rec(
            start,
            span_name="plan",
            tool_call_count=2,
            tool_names=["get_weather", "search_docs"],
            call_id="agent-plan",
            **common,
        ),
        rec(  # rate limited, retried after a back-off
            start - 0.5,
            span_name="plan / act",
            status_code=429,
            error_type="rate_limit_error",
            error="slow down",
            call_id="agent-act",
            attempt=1,
            duration_ms=80.0,
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost_usd=None,
            tool_call_count=None,
            **common,
        ),
        rec(
            start - 1.5,
            span_name="plan / act",
            call_id="agent-act",
            attempt=2,
            streamed=True,
            ttft_ms=120.0,
            ttlt_ms=580.0,
            duration_ms=600.0,
            **common,
        ),
    ]


def seed_records() -> list[CallRecord]:
    rows = agent_calls(60)  # ended a minute ago: live (a trace polls for 10 minutes after its end)
    rows.append(
        rec(
            3000,
            trace_id=DIGEST,
            trace_name="nightly-digest",
            request_model="claude-sonnet-4-5",
            response_model="claude-sonnet-4-5",
            provider="anthropic",
            cost_usd=0.42,
            duration_ms=9000.0,
            input_tokens=20_000,
            output_tokens=1500,
            total_tokens=21_500,
            tags={"session": "conv-1"},
        )
    )
    rows.append(  # hostile text wherever a trace's stored strings are shown
        rec(
            1200,
            trace_id=ODD,
            trace_name=XSS,
            span_name=XSS,
            tool_call_count=1,
            tool_names=[XSS],
            cost_usd=0.001,
            route=XSS,
            user=XSS,
            request_model=XSS,
            response_model=XSS,
            tags={"session": XSS},
        )
    )
    rows += [
        rec(86400 + 6 * 3600 + i, trace_id=OLD, inbound_request_id=OLD, user="bob", cost_usd=0.000001) for i in range(2)
    ]
    rows += [rec(100 + i) for i in range(3)]  # calls outside any trace
    return rows


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    global NOW
    NOW = time.time()
    monitor = Monitor(tmp_path_factory.mktemp("traces") / "traces.db")
    insert(monitor, seed_records())
    yield monitor
    monitor.close()


Get = Callable[..., tuple[int, dict[str, str], str]]


def asgi_getter(app: Any) -> Get:
    client = TestClient(app, base_url="http://test")

    def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        response = client.get(url, headers=headers or {})
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.text

    return get


def flask_getter(app: Any) -> Get:
    client = WerkzeugClient(app)

    def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        path, _, query = url.partition("?")
        response = client.get(path, query_string=query, headers=headers or {}, buffered=True)
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.get_data(True)

    return get


def mounted(framework: str, monitor: Monitor, prefix: str) -> Get:
    """The dashboard mounted at ``prefix`` in a host app of ``framework``."""
    if framework == "fastapi":
        fastapi = FastAPI()
        fastapi.mount(prefix, monitor.asgi_app())
        return asgi_getter(fastapi)
    if framework == "starlette":
        return asgi_getter(Starlette(routes=[Mount(prefix, app=monitor.asgi_app())]))
    flask = Flask(__name__)
    flask.wsgi_app = DispatcherMiddleware(flask.wsgi_app, {prefix: monitor.wsgi_app()})  # type: ignore[method-assign]
    return flask_getter(flask)


@pytest.fixture(
    scope="module",
    params=[(f, p) for f in ("fastapi", "starlette", "flask") for p in ("/monitoring", "/ops/llm")],
    ids=lambda fp: f"{fp[0]}{fp[1].replace('/', '-')}",
)
def app(request: pytest.FixtureRequest, seeded: Monitor) -> tuple[Get, str]:
    framework, prefix = request.param
    return mounted(framework, seeded, prefix), prefix


def enc(trace_id: str) -> str:
    return quote(trace_id, safe="")


PAGES = [
    "/traces",
    f"/traces/{AGENT}",
    f"/traces/{enc(ODD)}",
    "/sessions/conv-1",
    f"/sessions/{enc(XSS)}",
]
FRAGMENTS = ["/fragments/traces/table", f"/fragments/trace/{AGENT}", "/fragments/session/conv-1"]


def urls_in(text: str) -> list[tuple[str, str]]:
    return [(attr, html.unescape(value)) for attr, value in URL_ATTRS.findall(text)]


def trace_order(text: str, prefix: str) -> list[str]:
    """Trace ids in the order the list shows them."""
    found = re.findall(rf'class="row-link trace-link" href="{re.escape(prefix)}/traces/([^"?]+)', text)
    return [unquote(html.unescape(f)) for f in found]


def polls(text: str, region: str) -> bool:
    """Whether the region ``region`` (a ``<section id=...>``) refreshes itself."""
    tag = re.search(rf'<section id="{region}"[^>]*>', text)
    assert tag, f"no region {region}"
    return "data-poll" in tag.group(0) and 'hx-trigger="every 10s, refresh-now"' in tag.group(0)


def call_ids(monitor: Monitor, trace_id: str) -> list[int]:
    rows = monitor.store.queries.requests(Filters(), limit=1000)[0]
    return sorted(r["id"] for r in rows if r.get("trace_id") == trace_id)


# ---- pages and partials -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_full_pages_and_htmx_partials(app: tuple[Get, str], path: str) -> None:
    get, prefix = app
    status, headers, text = get(prefix + path)
    assert status == 200, text[:500]
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert "HX-Request" in headers["vary"] and headers["cache-control"] == "no-store"
    assert f'href="{prefix}/static/traces.css' in text
    status, headers, part = get(prefix + path, HX)
    assert status == 200 and "HX-Request" in headers["vary"]
    assert "<html" not in part and "<head" not in part
    assert 'id="tabs"' in part and 'hx-swap-oob="true"' in part
    status, _, restore = get(prefix + path, {**HX, "HX-History-Restore-Request": "true"})
    assert status == 200 and "<html" in restore


def test_the_list_pushes_its_canonical_url(app: tuple[Get, str]) -> None:
    get, prefix = app
    _, headers, _ = get(prefix + "/traces?range=7d&provider=&user=&sort=cost", HX)
    assert headers["hx-push-url"] == f"{prefix}/traces?range=7d&sort=cost"
    assert get(headers["hx-push-url"])[0] == 200
    _, headers, text = get(prefix + "/traces?tool=get_weather&limit=25", HX)  # the tool filter is kept too
    assert headers["hx-push-url"] == f"{prefix}/traces?tool=get_weather&limit=25"
    sort_links = [u for a, u in urls_in(text) if "sort=cost" in u]
    assert sort_links and all("tool=get_weather" in u for u in sort_links)


@pytest.mark.parametrize("path", FRAGMENTS)
def test_fragments_are_partials_for_htmx_and_pages_otherwise(app: tuple[Get, str], path: str) -> None:
    get, prefix = app
    status, headers, part = get(prefix + path, HX)
    assert status == 200 and "HX-Request" in headers["vary"]
    assert "<html" not in part and part.strip() and 'id="tabs"' not in part
    status, headers, direct = get(prefix + path)
    assert status == 200 and "<html" in direct and "HX-Request" in headers["vary"]


def test_every_link_follows_the_prefix_and_answers(app: tuple[Get, str]) -> None:
    """Crawl every href/src/action/hx-* URL of every traces page and partial, and check the pages they lead to."""
    get, prefix = app
    sources = [(p, {}) for p in [*PAGES, "/traces?range=7d&sort=cost", "/traces?range=7d&limit=25&offset=0"]]
    sources += [(p, HX) for p in [*PAGES, *FRAGMENTS]]
    found: dict[str, str] = {}
    for path, headers in sources:
        status, _, text = get(prefix + path, headers)
        assert status == 200, path
        for attr, url in urls_in(text):
            assert url.startswith(prefix + "/"), (path, attr, url)
            found.setdefault(url, attr)
    assert any("/requests/" in u for u in found) and any("/sessions/" in u for u in found)
    assert len(found) > 40, "the crawl found suspiciously few links"
    for url, attr in sorted(found.items()):
        status, headers, text = get(url, HX if attr == "hx-get" else {})
        assert status == 200, (attr, url, text[:300])
        if headers["content-type"].startswith("text/html"):
            assert all(u.startswith(prefix + "/") for _, u in urls_in(text)), url


def test_markup_is_csp_friendly(app: tuple[Get, str]) -> None:
    get, prefix = app
    for path in [*PAGES, *FRAGMENTS]:
        text = get(prefix + path)[2]
        assert " style=" not in text and "hx-on" not in text and "javascript:" not in text, path
        assert all('src="' in attrs for attrs in re.findall(r"<script([^>]*)>", text)), path


# ---- the list ---------------------------------------------------------------------------------------------------


def test_list_shows_each_trace_once_with_its_totals(app: tuple[Get, str]) -> None:
    get, prefix = app
    text = get(prefix + "/traces")[2]
    assert re.search(r"<strong>3</strong> traces", text)  # not the old one, not the calls outside a trace
    assert sorted(trace_order(text, prefix)) == sorted([AGENT, DIGEST, ODD])
    assert "nightly-digest" in text and "POST /agents/{agent_id}/run" in text
    assert charts.fmt_usd(0.42) in text and charts.fmt_ms(9000) in text
    week = get(prefix + "/traces?range=7d")[2]
    assert OLD in trace_order(week, prefix)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ({}, [AGENT, ODD, DIGEST]),  # newest first
        ({"sort": "cost"}, [DIGEST, ODD, AGENT]),
        ({"sort": "duration"}, [DIGEST, AGENT, ODD]),
        ({"sort": "calls"}, [AGENT]),
        ({"sort": "time", "dir": "asc"}, [DIGEST, ODD, AGENT]),
    ],
)
def test_sorting(app: tuple[Get, str], sort: dict[str, str], expected: list[str]) -> None:
    get, prefix = app
    query = "&".join(f"{k}={v}" for k, v in sort.items())
    text = get(f"{prefix}/traces?{query}")[2]
    assert trace_order(text, prefix)[: len(expected)] == expected
    if sort.get("sort") not in (None, "time"):
        assert 'aria-sort="descending"' in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("user=alice", {AGENT}),
        ("provider=anthropic", {DIGEST}),
        ("status=error", {AGENT}),
        ("tool=get_weather", {AGENT}),
        ("tag=session:conv-1", {AGENT, DIGEST}),
        ("range=7d&user=bob", {OLD}),
        ("model=claude-sonnet-4-5", {DIGEST}),
        ("q=slow", {AGENT}),
    ],
)
def test_filters_like_the_requests_log(app: tuple[Get, str], query: str, expected: set[str]) -> None:
    get, prefix = app
    assert set(trace_order(get(f"{prefix}/traces?{query}")[2], prefix)) == expected


def test_paging_keeps_filters_and_sort(app: tuple[Get, str]) -> None:
    get, prefix = app
    seen: list[str] = []
    url: str | None = f"{prefix}/traces?range=7d&sort=cost&limit=1"
    while url is not None and len(seen) < 10:  # follow "Next" to the end
        text = get(url)[2]
        seen += trace_order(text, prefix)
        assert 'aria-sort="descending"' in text
        nexts = re.findall(r'<a class="button" href="([^"]+)"[^>]*>Next', text)
        url = html.unescape(nexts[0]) if nexts else None
        if url is not None:
            assert "range=7d" in url and "sort=cost" in url and "limit=1" in url
    assert seen == [DIGEST, ODD, AGENT, OLD]
    assert not polls(get(f"{prefix}/traces?limit=1&offset=1")[2], "traces-table")  # a later page holds still
    assert not polls(get(f"{prefix}/traces?sort=cost")[2], "traces-table")
    assert polls(get(f"{prefix}/traces")[2], "traces-table")


# ---- one trace --------------------------------------------------------------------------------------------------


def test_trace_view_has_totals_waterfall_and_calls(app: tuple[Get, str], seeded: Monitor) -> None:
    get, prefix = app
    status, _, text = get(f"{prefix}/traces/{AGENT}")
    assert status == 200
    assert "POST /agents/{agent_id}/run" in text and "alice" in text
    ids = call_ids(seeded, AGENT)
    assert len(ids) == 3
    for call_pk in ids:  # each attempt: a waterfall row and a table row, both linking to its detail
        assert text.count(f'href="{prefix}/requests/{call_pk}') >= 2, call_pk
    assert text.count('class="wf-svg"') == 3
    assert "wf-ttft" in text and "first token at +120 ms" in text
    assert "wf-backoff" in text and "back-off before this retry" in text
    assert "try 2" in text and "get_weather, search_docs" in text and "wf-tool" in text
    assert "plan / act" in text
    assert f'href="{prefix}/sessions/conv-1' in text
    assert polls(text, "trace-body")  # it ended minutes ago: it may still grow


def test_an_old_trace_does_not_poll(app: tuple[Get, str]) -> None:
    get, prefix = app
    text = get(f"{prefix}/traces/{OLD}")[2]
    assert not polls(text, "trace-body")


def test_trace_ids_that_need_encoding(app: tuple[Get, str]) -> None:
    get, prefix = app
    listed = get(f"{prefix}/traces")[2]
    assert f'href="{prefix}/traces/{enc(ODD)}' in listed.replace("&amp;", "&")
    status, _, text = get(f"{prefix}/traces/{enc(ODD)}")
    assert status == 200 and html.escape(ODD, quote=False) in text


@pytest.mark.parametrize("path", ["/traces/nope", "/sessions/nobody", "/fragments/trace/nope"])
def test_unknown_ids_are_404_pages(app: tuple[Get, str], path: str) -> None:
    get, prefix = app
    for headers in ({}, HX):
        status, response_headers, text = get(prefix + path, headers)
        assert status == 404 and response_headers["content-type"].startswith("text/html")
        assert "Traceback" not in text


# ---- one session ------------------------------------------------------------------------------------------------


def test_session_view_lists_traces_and_calls(app: tuple[Get, str], seeded: Monitor) -> None:
    get, prefix = app
    status, _, text = get(f"{prefix}/sessions/conv-1")
    assert status == 200 and "Session conv-1" in text
    assert f'href="{prefix}/traces/{AGENT}' in text and f'href="{prefix}/traces/{DIGEST}' in text
    for call_pk in [*call_ids(seeded, AGENT), *call_ids(seeded, DIGEST)]:
        assert f'href="{prefix}/requests/{call_pk}' in text
    assert charts.fmt_usd(0.42) in text  # the session's total includes the digest's cost
    assert "tag=session%3Aconv-1" in text  # and links to its calls in the requests log


# ---- parameters and escaping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/traces?sort=id;DROP", "sort"),
        ("/traces?sort=ttft", "sort"),  # a requests sort, not a traces one
        ("/traces?dir=up", "dir"),
        ("/traces?limit=0", "limit"),
        ("/traces?offset=-1", "offset"),
        ("/traces?range=2y", "range"),
        ("/traces?tag=novalue", "tag"),
        ("/traces?status=meh", "status"),
        ("/fragments/traces/table?limit=x", "limit"),
        ("/traces/a%00b", "trace_id"),
        ("/traces/" + "x" * 201, "trace_id"),
        ("/sessions/a%01b", "session_id"),
        ("/traces/", "trace_id"),
    ],
)
def test_bad_parameters_are_a_400_page(app: tuple[Get, str], path: str, parameter: str) -> None:
    get, prefix = app
    for headers in ({}, HX):
        status, response_headers, text = get(prefix + path, headers)
        assert status == 400, (path, status)
        assert "text/html" in response_headers["content-type"]
        assert f"<code>{parameter}</code>" in text and "Traceback" not in text


def test_requests_log_keeps_its_own_sort_keys(app: tuple[Get, str]) -> None:
    get, prefix = app
    assert get(prefix + "/requests?sort=ttft")[0] == 200
    assert get(prefix + "/requests?sort=llm_time")[0] == 400
    assert get(prefix + "/traces?sort=llm_time")[0] == 200


def test_stored_text_is_escaped(app: tuple[Get, str]) -> None:
    get, prefix = app
    escaped = html.escape(XSS, quote=False)
    shown = 0
    for path in [*PAGES, *FRAGMENTS]:
        for headers in ({}, HX):
            text = get(prefix + path, headers)[2]
            assert XSS not in text and "<script>alert" not in text, path
            shown += text.count(escaped)
    assert shown > 10


def test_empty_database_shows_how_to_start(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "empty.db")
    get = mounted("starlette", monitor, "/m")
    status, _, text = get("/m/traces")
    assert status == 200 and "monitor.transport()" in text
    assert get("/m/fragments/traces/table", HX)[0] == 200
    assert get("/m/traces/none")[0] == 404
    monitor.close()


# ---- the waterfall itself ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [0.0001, 0.3, 1, 7, 99, 100, 101, 1234, 2100, 9999, 10_700, 65_000, 1e7])
def test_waterfall_axis_ticks_are_round_distinct_and_cover_the_trace(end: float) -> None:
    ticks = ticks_for(end)
    assert ticks[0] == 0 and ticks[-1] >= end and 3 <= len(ticks) <= 7
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and len({charts.fmt_ms(t) for t in ticks}) == len(ticks)
    assert ticks[-1] < end * 1.5  # little width wasted past the trace's end


def test_waterfall_escapes_and_bounds_what_it_draws() -> None:
    calls = [
        {
            "offset_ms": float(i),
            "duration_ms": None if i == 1 else 10.0,
            "ttft_ms": 2.0,
            "model": XSS,
            "span_name": XSS,
            "provider": XSS,
            "tool_call_count": 1,
            "tool_names": [XSS],
            "ok": i != 2,
            "status_code": None if i == 2 else 200,
            "attempt": 1,
            "call_id": str(i),
        }
        for i in range(WATERFALL_ROWS + 5)
    ]
    drawn = waterfall(calls, [f"/r/{i}" for i in range(len(calls))], trace_ms=None)
    text = str(drawn.html)
    assert "<script>" not in text and html.escape(XSS, quote=False) in text
    assert drawn.rows == WATERFALL_ROWS and drawn.omitted == 5
    assert text.count('class="wf-svg"') == WATERFALL_ROWS and "no response" in text
    empty = waterfall([{"offset_ms": None, "duration_ms": None}], ["/r/1"])
    assert empty.rows == 1 and empty.scale_ms > 0
