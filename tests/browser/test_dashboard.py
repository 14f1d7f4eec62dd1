"""The dashboard in a real browser: Debian's Chromium driven by Playwright against uvicorn on 127.0.0.1.

Skipped (with the reason) when Playwright or /usr/bin/chromium is missing, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Monitor

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


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    monitor = Monitor(tmp_path_factory.mktemp("browser") / "browser.db", capture_content=True)
    seed(monitor, 3000, now=time.time(), days=7)
    with serve(host_app(monitor, PREFIX)) as url:
        yield url + PREFIX
    monitor.close()


class Watch:
    """Collects console errors, page errors, failed requests and HTTP error responses of a page."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        self.fragment_requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)

        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        page.on("request", lambda r: "/fragments/" in r.url and self.fragment_requests.append(r.url))

    def _failed(self, request: Any) -> None:
        # ERR_ABORTED is the browser cancelling its own request when the test navigates on (seen for the favicon
        # of a page left at once); the server did not fail it, so it is not a problem of the app.
        if "ERR_ABORTED" not in str(request.failure):
            self.problems.append(f"failed: {request.url} {request.failure}")


def test_overview_filter_detail_and_back(browser: Any, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto(base_url + "/")
    assert page.title().startswith("Overview")
    assert page.evaluate("window.htmx && htmx.version") == "2.0.11"
    assert page.evaluate("htmx.config.allowEval") is False
    assert page.locator(".kpi").count() == 8
    assert page.locator("svg.chart").count() == 6

    # a range change is an htmx swap (no reload) that pushes a URL which also loads as a full page
    page.evaluate("window.__stayed = true")
    page.locator(".ranges a.seg", has_text="7d").click()
    page.wait_for_url("**/?range=7d")
    page.wait_for_selector(".ranges a.seg.active:text-is('7d')")
    assert page.evaluate("window.__stayed") is True
    assert "7d" in page.locator(".tabs a.tab", has_text="Requests").get_attribute("href")  # tabs carry the range

    page.locator(".tabs a.tab", has_text="Requests").click()  # tabs are plain links: a full page load
    page.wait_for_url("**/requests?range=7d")
    page.evaluate("window.__stayed = true")
    page.select_option("form.filters select[name=provider]", "anthropic")  # app.js submits on change
    page.wait_for_url("**/requests?range=7d&provider=anthropic")  # empty fields are not in the pushed URL
    page.wait_for_selector("table.data tbody tr")
    providers = page.locator("table.data tbody tr td:nth-child(2)").all_inner_texts()
    assert providers and set(providers) == {"anthropic"}
    assert page.evaluate("window.__stayed") is True

    first = page.locator("table.data tbody tr a.row-link").first
    href = first.get_attribute("href")
    assert href.startswith(PREFIX + "/requests/")
    first.click()
    page.wait_for_url("**" + href)
    assert page.locator("h1").inner_text().endswith("anthropic")
    assert page.locator("svg.timeline").count() == 1

    page.go_back()  # history restore reloads the filtered list from the server
    page.wait_for_url("**provider=anthropic**")
    page.wait_for_selector("table.data tbody tr")
    assert set(page.locator("table.data tbody tr td:nth-child(2)").all_inner_texts()) == {"anthropic"}

    for path in ("/costs?range=30d", "/errors?range=7d"):
        page.goto(base_url + path)
        assert page.locator("svg.chart").count() >= 2
    page.close()
    assert watch.problems == []


def test_live_toggle_pauses_polling(browser: Any, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch(page)
    page.goto(base_url + "/?range=1h")
    toggle = page.locator("#live-toggle")
    assert toggle.get_attribute("aria-pressed") == "true"
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false" and "Paused" in toggle.inner_text()
    page.reload()  # the choice is remembered
    assert page.locator("#live-toggle").get_attribute("aria-pressed") == "false"
    watch.fragment_requests.clear()
    page.wait_for_timeout(11_000)  # one polling period: nothing may be fetched while paused
    assert watch.fragment_requests == []
    with page.expect_request("**/fragments/overview/kpis**"):
        page.locator("#live-toggle").click()  # resuming refreshes at once
    assert page.locator("#live-toggle").get_attribute("aria-pressed") == "true"
    context.close()
    assert watch.problems == []


def test_bad_filter_shows_a_message(browser: Any, base_url: str) -> None:
    page = browser.new_page()
    page.goto(base_url + "/requests")
    page.fill("form.filters input[name=tag]", "no-colon")
    with page.expect_response(lambda r: r.status == 400):
        page.locator("form.filters button[type=submit]").click()
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert "key:value" in banner.inner_text()
    page.goto(base_url + "/requests?tag=no-colon")  # the same URL loaded directly: a readable 400 page
    assert "key:value" in page.locator(".lead").inner_text()
    page.close()


def test_phone_layout_does_not_scroll_sideways(browser: Any, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    watch = Watch(page)
    for path in ("/", "/costs", "/errors", "/requests"):
        page.goto(base_url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    page.close()
    assert watch.problems == []
