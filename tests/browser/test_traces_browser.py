"""The traces pages in a real browser (Debian's Chromium through Playwright, uvicorn on 127.0.0.1): open Traces,
sort by cost, open a trace, see its waterfall; on a 390 px phone nothing scrolls sideways.

Skipped (with the reason) when Playwright or /usr/bin/chromium is missing, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.read import Filters
from tests.seed import insert

from .server import host_app, serve
from .test_dashboard import CHROMIUM, CHROMIUM_ARGS, PREFIX, Watch, _unavailable

pytestmark = pytest.mark.browser

MODELS = [("openai", "gpt-4o-mini", 0.15, 0.6), ("anthropic", "claude-sonnet-4-5", 3.0, 15.0)]
TOOLS = ["search_docs", "get_weather", "lookup_order", "send_email"]


def traces(now: float, n: int = 40, seed: int = 11) -> Iterator[CallRecord]:
    """``n`` traces in the last 20 hours: agent requests of 1 to 6 steps (some retried, some asking for tools) and
    ``monitor.trace()`` runs, two sessions among them."""
    rng = random.Random(seed)
    for i in range(n):
        start = now - rng.uniform(60, 20 * 3600)
        trace_id = f"{rng.getrandbits(64):016x}"
        run = i % 4 == 0
        attribution: dict[str, Any] = (
            {"trace_name": "nightly-digest"}
            if run
            else {
                "inbound_request_id": trace_id,
                "inbound_method": "POST",
                "route": "/agents/{agent_id}/run",
                "user": f"user-{i % 7}",
            }
        )
        tags = {"session": f"conv-{i % 2}"} if i % 5 == 0 else {}
        t = start
        for step in range(rng.randint(1, 6)):
            provider, model, p_in, p_out = rng.choice(MODELS)
            inp, out = rng.randint(200, 4000), rng.randint(20, 800)
            duration = rng.uniform(200, 3000)
            call_id = f"{trace_id}-{step}"
            common = {
                "provider": provider,
                "operation": "chat",
                "endpoint": "/v1/chat/completions",
                "request_model": model,
                "response_model": model,
                "trace_id": trace_id,
                "span_name": rng.choice(["plan", "plan / act", "answer"]),
                "call_id": call_id,
                "tags": tags,
                **attribution,
            }
            if rng.random() < 0.15:  # rate limited, retried after a back-off
                yield CallRecord(
                    started_at=t, status_code=429, error_type="rate_limit_error", duration_ms=90.0, attempt=1, **common
                )
                t += rng.uniform(0.4, 1.5)
                attempt = 2
            else:
                attempt = 1
            tools = rng.sample(TOOLS, rng.randint(1, 2)) if rng.random() < 0.4 else []
            ttft = duration * rng.uniform(0.1, 0.4)
            yield CallRecord(
                started_at=t,
                status_code=200,
                attempt=attempt,
                streamed=True,
                input_tokens=inp,
                output_tokens=out,
                total_tokens=inp + out,
                cost_usd=inp * p_in / 1e6 + out * p_out / 1e6,
                duration_ms=duration,
                ttft_ms=ttft,
                ttlt_ms=duration * 0.98,
                tool_call_count=len(tools),
                tool_names=tools or None,
                **common,
            )
            t += duration / 1000 + rng.uniform(0.01, 0.3)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Monitor]]:
    monitor = Monitor(tmp_path_factory.mktemp("browser-traces") / "traces.db")
    insert(monitor, traces(time.time()))
    with serve(host_app(monitor, PREFIX)) as url:
        yield url + PREFIX, monitor
    monitor.close()


def test_sort_by_cost_open_a_trace_and_see_its_waterfall(browser: Any, site: tuple[str, Monitor]) -> None:
    base_url, monitor = site
    by_cost = monitor.store.traces.list(
        Filters(since=time.time() - 86400),
        sort="cost",
    )[0]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto(base_url + "/traces")
    assert page.title().startswith("Traces")
    assert page.locator("table.traces-table tbody tr").count() == 40

    page.evaluate("window.__stayed = true")
    page.locator("table.traces-table th a", has_text="Cost").click()  # an htmx swap, not a reload
    page.wait_for_url("**/traces?sort=cost&dir=desc")
    page.wait_for_selector("table.traces-table th.sorted[aria-sort=descending]")
    assert page.evaluate("window.__stayed") is True
    hrefs = page.locator("table.traces-table a.trace-link").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert [h.split("/traces/")[1].split("?")[0] for h in hrefs] == [t["trace_id"] for t in by_cost]

    top = by_cost[0]
    page.locator("table.traces-table a.trace-link").first.click()
    page.wait_for_url(f"**/traces/{top['trace_id']}")
    page.wait_for_selector(".waterfall")
    rows = page.locator(".waterfall .wf-row:not(.wf-head)")
    assert rows.count() == top["attempts"]
    bars = page.locator(".waterfall .wf-svg rect.wf-wait, .waterfall .wf-svg rect.wf-err")
    assert bars.count() == top["attempts"]
    first_bar = bars.first.bounding_box()
    assert first_bar is not None and first_bar["width"] > 1
    track = page.locator(".waterfall .wf-track").first.bounding_box()
    assert track is not None and track["width"] > 500
    assert page.locator("table.trace-calls tbody tr").count() == top["attempts"]

    detail = page.locator("table.trace-calls a.row-link").first
    href = detail.get_attribute("href")
    assert href.startswith(PREFIX + "/requests/")
    detail.click()
    page.wait_for_url("**" + href)
    assert page.locator("svg.timeline").count() == 1
    page.close()
    assert watch.problems == []


def test_phone_layout_of_the_traces_pages(browser: Any, site: tuple[str, Monitor]) -> None:
    base_url, monitor = site
    listed = monitor.store.traces.list(Filters(), sort="calls")[0]
    biggest = listed[0]["trace_id"]
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    watch = Watch(page)
    for path in ("/traces", "/traces?sort=cost", f"/traces/{biggest}", "/sessions/conv-0"):
        page.goto(base_url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    page.goto(f"{base_url}/traces/{biggest}")
    track = page.locator(".waterfall .wf-track").first.bounding_box()
    assert track is not None and track["width"] > 300  # the bar takes the phone's width, the label sits above it
    sizes = page.locator(".wf-axis .wf-tick").evaluate_all(
        "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))"
    )
    assert sizes and min(sizes) >= 11
    page.close()
    assert watch.problems == []
