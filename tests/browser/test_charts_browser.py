"""Charts in a real browser: the hover tooltip lists every series at the bucket under the pointer (also by keyboard
and after an htmx refresh), and tick labels are at least 11 px and never overlap, on a desktop and on a phone."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from .test_dashboard import Watch, base_url, browser  # noqa: F401 - fixtures shared with the dashboard test

pytestmark = pytest.mark.browser

LABELS = """() => [...document.querySelectorAll('.tchart')].map(chart => {
  const box = el => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const r = el instanceof SVGElement ? el.getBoundingClientRect() : range.getBoundingClientRect();
    return {text: el.textContent, size: parseFloat(getComputedStyle(el).fontSize), left: r.left, right: r.right,
            top: r.top, height: r.height, date: el.classList.contains('date')};
  };
  return {y: [...chart.querySelectorAll('.tchart-y span')].map(box),
          x: [...chart.querySelectorAll('.tchart-x text')].map(box),
          width: chart.querySelector('.tchart-plot').getBoundingClientRect().width};
})"""


TIP = """c => { const tip = c.querySelector('.chart-tip');
  return {time: tip.querySelector('.chart-tip-time').textContent,
          rows: [...tip.querySelectorAll('.chart-tip-row')].map(r =>
            [r.querySelector('.chart-tip-name').textContent, r.querySelector('.chart-tip-value').textContent])}; }"""


def _tooltip(chart: Any) -> dict[str, Any]:
    """The visible tooltip of ``chart``: its time line and (series, value) rows."""
    chart.locator(".chart-tip").wait_for(state="visible")
    result: dict[str, Any] = chart.evaluate(TIP)
    return result


def _hover(page: Any, chart: Any, fraction: float) -> int:
    """Move the pointer to ``fraction`` of the chart's plot width; the bucket index under it."""
    plot = chart.locator(".tchart-plot")
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    n = len(chart.evaluate("c => JSON.parse(c.dataset.chart).times"))
    return min(n - 1, math.floor(fraction * n))


def _expect(chart: Any, index: int, tip: dict[str, Any]) -> None:
    """The tooltip shows bucket ``index``: its UTC time and every series' value, as the server formatted them."""
    data = chart.evaluate("c => JSON.parse(c.dataset.chart)")
    assert tip["time"] == data["times"][index] and tip["time"].endswith(" UTC")
    assert tip["rows"] == [[s["name"], s["values"][index]] for s in data["series"]]
    assert all(value for _, value in tip["rows"])


def test_hover_tooltip_lists_every_series_at_the_bucket(browser: Any, base_url: str) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto(base_url + "/")
    charts = page.locator("#overview-charts .tchart")
    assert charts.count() == 6
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        index = _hover(page, chart, 0.62)
        _expect(chart, index, _tooltip(chart))
        assert chart.locator(".tchart-cross").is_visible()
    # one tooltip at a time: the others hid when the pointer moved on
    assert page.locator(".chart-tip:visible").count() == 1

    # the keyboard: focus a plot, step left, Escape hides
    first = charts.nth(0)
    first.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    plot = first.locator(".tchart-plot")
    start = int(plot.get_attribute("data-index"))  # focus resumes at the bucket last pointed at
    plot.focus()
    _expect(first, start, _tooltip(first))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    _expect(first, start - 2, _tooltip(first))
    page.keyboard.press("End")
    n = len(first.evaluate("c => JSON.parse(c.dataset.chart).times"))
    _expect(first, n - 1, _tooltip(first))
    page.keyboard.press("Escape")
    assert not first.locator(".chart-tip").is_visible()

    # an htmx refresh swaps the charts: hovering the new ones works without rebinding
    page.evaluate(
        "window.__swapped = false;"
        " document.body.addEventListener('htmx:afterSettle', () => { window.__swapped = true; }, {once: true});"
        " htmx.trigger('#overview-charts', 'refresh-now')"
    )
    page.wait_for_function("() => window.__swapped === true")
    chart = page.locator("#overview-charts .tchart").nth(1)
    index = _hover(page, chart, 0.3)
    _expect(chart, index, _tooltip(chart))
    assert watch.problems == []
    page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_tick_labels_are_readable_and_apart(browser: Any, base_url: str, width: int) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
    watch = Watch(page)
    page.goto(base_url + "/?range=7d")
    charts = page.evaluate(LABELS)
    assert len(charts) == 6
    for chart in charts:
        assert chart["y"] and chart["x"]
        if width == 390:
            assert chart["width"] < 360  # the phone layout: one narrow chart per row
        for label in chart["y"] + chart["x"]:
            assert label["size"] >= 11, label
            assert label["height"] >= 11, label  # rendered size: the labels do not shrink with the plot
        texts = [label["text"] for label in chart["y"]]
        assert len(set(texts)) == len(texts), texts  # value ticks never repeat
        for row in (False, True):  # time labels and the date line under them
            boxes = sorted((b for b in chart["x"] if b["date"] == row), key=lambda b: b["left"])
            for a, b in itertools.pairwise(boxes):
                assert a["right"] + 2 <= b["left"], (a, b)
    assert watch.problems == []
    page.close()
