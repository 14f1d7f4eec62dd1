"""The dashboard on a phone (390 px, Chromium through Playwright): the requests log as cards, every page without
sideways scrolling, the tabs and the Alerts badge on screen; and grids without empty slots at every width.

Skipped (with the reason) when Playwright or /usr/bin/chromium is missing, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Monitor, Rule
from llm_monitor_mw.record import CallRecord
from tests.seed import insert

from .seeding import seed
from .server import host_app, serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
PREFIX = "/monitoring"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
PAGES = ["/", "/requests", "/traces", "/costs", "/errors", "/alerts"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


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


def _extra(now: float) -> list[CallRecord]:
    """A stream without usage, a retried call and a call that asked for tools, in a trace and a session."""
    common: dict[str, Any] = {"provider": "openai", "operation": "chat", "endpoint": "/v1/chat/completions"}
    return [
        CallRecord(started_at=now - 30, request_model="gpt-4o-mini", status_code=200, streamed=True, duration_ms=800.0,
                   ttft_ms=200.0, route="/chat/{conversation_id}/messages", user="a-rather-long-user-name@example.com",
                   call_id="no-usage", **common),
        CallRecord(started_at=now - 20, request_model="gpt-4o-mini", status_code=429, duration_ms=120.0,
                   call_id="retried", attempt=1, **common),
        CallRecord(started_at=now - 18.86, request_model="gpt-4o-mini", status_code=200, duration_ms=700.0,
                   input_tokens=100, output_tokens=20, total_tokens=120, cost_usd=0.0000036, call_id="retried",
                   attempt=2, tool_call_count=1, tool_names=["get_weather"], trace_id="run-1", trace_name="agent",
                   tags={"session": "conversation-1"}, **common),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    monitor = Monitor(tmp_path_factory.mktemp("phone") / "phone.db", capture_content=True)
    now = time.time()
    seed(monitor, 800, now=now, days=7)
    insert(monitor, _extra(now))
    monitor.alerts.add_rule(Rule("errors", "error_rate", 0.001, window="7d"))
    monitor.alerts.evaluate_now()
    with serve(host_app(monitor, PREFIX)) as url:
        yield url + PREFIX
    monitor.close()


@pytest.fixture(scope="module")
def empty_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    monitor = Monitor(tmp_path_factory.mktemp("phone-empty") / "empty.db")
    with serve(host_app(monitor, PREFIX)) as url:
        yield url + PREFIX
    monitor.close()


def sideways(page: Any) -> int:
    """How far the page scrolls sideways beyond the 390 px phone (a mobile layout viewport widens to its content,
    so compare with the device width, not innerWidth)."""
    return int(page.evaluate("Math.max(document.scrollingElement.scrollWidth, innerWidth)")) - 390


def on_screen(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    return box is not None and box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= 390 + 0.5


def test_requests_log_is_a_list_of_cards(browser: Any, base_url: str) -> None:
    page = browser.new_context(**PHONE).new_page()
    page.goto(base_url + "/requests")
    assert sideways(page) <= 0
    assert not page.locator(".requests-log thead").is_visible()
    cards = page.locator(".requests-log tbody tr")
    assert cards.count() >= 10
    for i in range(10):
        card = cards.nth(i)
        assert card.evaluate("e => getComputedStyle(e).display") == "flex"
        for cell in (".c-time a", ".c-model", ".c-status .badge", "td[data-label=Duration]", "td[data-label=Cost]",
                     "td[data-label=In]", "td[data-label=Out]"):  # fmt: skip
            assert on_screen(page, card.locator(cell)), (i, cell)
        attribution = card.locator(".c-attr")
        if attribution.inner_text().strip():
            assert on_screen(page, attribution), i
    # the labels say what each figure is; an unknown figure is a dash that explains itself
    first = cards.nth(0)
    assert first.locator("td[data-label=Cost]").evaluate("e => getComputedStyle(e, '::before').content") == '"Cost "'
    no_usage = page.locator(".requests-log tr", has=page.locator(".c-attr", has_text="a-rather-long-user-name"))
    assert "no usage reported" in (no_usage.locator("td[data-label=Cost] .unknown").get_attribute("title") or "")
    page.close()


def test_desktop_keeps_the_table(browser: Any, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base_url + "/requests")
    assert page.locator(".requests-log thead").is_visible()
    assert page.locator(".requests-log tbody tr").first.evaluate("e => getComputedStyle(e).display") == "table-row"
    page.close()


def test_no_page_scrolls_sideways_and_the_tabs_and_badge_are_on_screen(browser: Any, base_url: str) -> None:
    page = browser.new_context(**PHONE).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.goto(base_url + "/requests")
    detail = page.locator(".requests-log tr", has=page.locator(".pill", has_text="1 tool")).locator(".c-time a")
    detail_path = detail.get_attribute("href").split("?")[0].removeprefix(PREFIX)
    for path in [*PAGES, detail_path]:
        page.goto(base_url + path)
        assert sideways(page) <= 0, path
        tabs = page.locator("nav.tabs .tab")
        assert tabs.count() == 5
        for i in range(5):
            assert on_screen(page, tabs.nth(i)), (path, tabs.nth(i).inner_text())
        badge = page.locator("#alerts-link .alert-count")
        assert on_screen(page, badge) and badge.inner_text().strip().endswith("firing"), path
    page.goto(base_url + "/")
    page.locator("nav.tabs .tab", has_text="Errors").tap()
    page.wait_for_url("**/errors*")
    page.locator("#alerts-link a").tap()
    page.wait_for_url("**/alerts")
    assert page.locator("h1").inner_text() == "Alerts"
    assert problems == []
    page.close()


def test_attempts_show_the_back_off(browser: Any, base_url: str) -> None:
    page = browser.new_context(**PHONE).new_page()
    page.goto(base_url + "/requests")
    page.locator(".requests-log tr", has=page.locator(".pill", has_text="1 tool")).locator(".c-time a").tap()
    page.wait_for_url("**/requests/*")
    backoff = page.locator(".attempts .c-backoff").nth(1)
    assert backoff.inner_text().strip() == "+1.02 s after attempt 1"
    assert on_screen(page, backoff) and sideways(page) <= 0
    assert page.locator("a", has_text="View trace").is_visible()
    page.close()


def test_code_samples_fit_their_box(browser: Any, empty_url: str) -> None:
    for options in (PHONE, {"viewport": {"width": 1280, "height": 900}}):
        page = browser.new_context(**options).new_page()
        for path in ("/alerts", "/"):
            page.goto(empty_url + path)
            code = page.locator("pre.code")
            assert code.is_visible()
            assert code.evaluate("e => e.scrollWidth <= e.clientWidth"), (options, path)
            if options is PHONE:
                assert sideways(page) <= 0
        page.close()


GRID_SLOTS = """() => [...document.querySelectorAll('[class*="grid-"]')].map(g => {
  const cols = getComputedStyle(g).gridTemplateColumns.split(' ').length;
  const span = c => parseInt(getComputedStyle(c).gridRowStart.replace('span ', '')) || 1;
  const used = [...g.children].reduce((n, c) => n + span(c), 0);
  return {grid: g.className, cols, used, items: g.children.length};
})"""


@pytest.mark.parametrize("width", [1440, 1280, 1150, 1000, 900, 800, 700, 390])
def test_grids_have_no_empty_slots(browser: Any, base_url: str, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    for path in ("/", "/costs", "/errors"):
        page.goto(base_url + path)
        grids = page.evaluate(GRID_SLOTS)
        assert grids, path
        for g in grids:
            assert g["used"] % g["cols"] == 0, (width, path, g)
        kpis = page.evaluate(
            "() => [...document.querySelectorAll('.kpis')].map(k => [getComputedStyle(k).gridTemplateColumns"
            ".split(' ').length, k.children.length])"
        )
        assert all(items % cols == 0 for cols, items in kpis), (width, path, kpis)
    page.close()
