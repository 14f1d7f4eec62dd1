"""Charts: round time ticks, distinct value ticks, gaps as gaps, zero bars as zero, buckets for sparse ranges."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.store.read import Filters
from llm_monitor_mw.web import charts
from llm_monitor_mw.web import format as fm
from llm_monitor_mw.web.pages.view import View, chart_window, step_for
from tests.browser.seeding import seed
from tests.browser.server import host_app

DAY = 86400
T0 = datetime(2024, 11, 30, 18, 7, tzinfo=UTC).timestamp()


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


# ---- time ticks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "step"),
    [(900, 300), (3600, 600), (6 * 3600, 3600), (DAY, 6 * 3600), (2 * DAY, 12 * 3600), (7 * DAY, 2 * DAY)],
)
def test_time_ticks_fall_on_round_utc_times(span: float, step: int) -> None:
    ticks = charts.time_ticks(T0, T0 + span)
    assert 2 <= len(ticks) <= charts.MAX_TIME_LABELS
    gaps = {b.ts - a.ts for a, b in itertools.pairwise(ticks)}
    assert gaps == {step}
    assert all(t.ts % min(step, DAY) == 0 for t in ticks)
    assert all(T0 <= t.ts <= T0 + span for t in ticks)


def test_time_labels_are_short_and_name_the_day_where_it_changes() -> None:
    ticks = charts.time_ticks(T0, T0 + DAY)
    assert [t.label for t in ticks] == ["00:00", "06:00", "12:00", "18:00"]
    assert [t.date for t in ticks] == ["1 Dec", "", "", ""]
    two = charts.time_ticks(T0, T0 + 2 * DAY)
    assert [(t.label, t.date) for t in two] == [
        ("00:00", "1 Dec"),
        ("12:00", ""),
        ("00:00", "2 Dec"),
        ("12:00", ""),
    ]
    assert max(len(t.label) for t in two) <= 6  # short labels: six of them fit a 340 px phone chart


def test_long_ranges_tick_days_weeks_and_months() -> None:
    week = charts.time_ticks(T0, T0 + 30 * DAY)
    assert all(datetime.fromtimestamp(t.ts, UTC).weekday() == 0 for t in week)  # Mondays
    assert week[0].label == "2 Dec" and week[0].date == "2024"
    months = charts.time_ticks(T0, T0 + 400 * DAY)
    assert all(datetime.fromtimestamp(t.ts, UTC).day == 1 for t in months) and len(months) <= 6
    assert [t.date for t in months if t.date] == ["2024", "2025"] or months[0].date == "2025"


def test_time_ticks_of_an_empty_or_broken_range() -> None:
    assert charts.time_ticks(T0, T0) == [] and charts.time_ticks(float("nan"), T0) == []


# ---- value ticks ---------------------------------------------------------------------------------------------


def test_value_ticks_are_round_and_their_labels_distinct() -> None:
    assert charts.nice_ticks(87) == [0, 25, 50, 75, 100]
    assert charts.nice_ticks(3, integer=True) == [0, 1, 2, 3]
    assert charts.nice_ticks(1, integer=True) == [0, 1]
    # the cost axis that once printed "$0.01, $0.01, $0.0050, $0"
    ticks = charts.nice_ticks(0.0093)
    assert charts.axis_labels(ticks, fm.money) == ["$0", "$0.0025", "$0.005", "$0.0075", "$0.01"]
    assert charts.axis_labels(charts.nice_ticks(0.0000093), fm.money)[-1] == "$0.00001"
    assert charts.axis_labels(charts.nice_ticks(2400), fm.duration_ms) == ["0 ms", "1 s", "2 s", "3 s"]
    assert charts.axis_labels(charts.nice_ticks(0.12), fm.percent) == ["0 %", "5 %", "10 %", "15 %"]
    assert charts.axis_labels(charts.nice_ticks(8700), fm.money) == ["$0", "$2.5k", "$5k", "$7.5k", "$10k"]


# ---- gaps and zeros ------------------------------------------------------------------------------------------


def _plot(svg: str) -> str:
    return svg[svg.index('<svg class="chart"') : svg.index("</svg>")]


def test_a_line_has_a_gap_where_a_bucket_has_no_data() -> None:
    times = [T0 + i * 60 for i in range(5)]
    svg = str(charts.time_chart(times, [charts.Series("p50", [10, 20, None, 30, 40])], step=60, label="Latency"))
    lines = re.findall(r'<path class="line s1" d="([^"]*)"', _plot(svg))
    assert len(lines) == 2 and all(d.count("L") == 1 for d in lines)  # two runs of two points, nothing across
    lone = str(charts.time_chart(times, [charts.Series("p50", [None, 5, None, None, 7])], step=60, label="L"))
    assert len(re.findall(r'class="dot s1"', lone)) == 2 and 'class="line' not in lone
    data = charts.chart_data(svg)
    assert data["series"][0]["values"] == ["10", "20", "—", "30", "40"]


def test_bars_show_zero_as_zero_and_unknown_as_unknown() -> None:
    times = [T0 + i * 3600 for i in range(3)]
    cost = [charts.Series("cost", [0.5, 0, None], "s4")]
    svg = str(charts.time_chart(times, cost, step=3600, label="Cost", fmt=fm.money, kind="bars"))
    assert len(re.findall(r'<rect class="bar', svg)) == 1
    assert charts.chart_data(svg)["series"][0]["values"] == ["$0.50", "$0", "—"]
    assert "cost: $0\n" not in svg and "cost: $0<" in svg.replace("</title>", "<")


def test_every_bucket_has_a_title_fallback_and_tooltip_data() -> None:
    times = [T0 - T0 % 3600 + i * 3600 for i in range(4)]
    series = [charts.Series("ok", [1, 2, 3, 4], "ok"), charts.Series("errors", [0, 1, 0, 0], "err")]
    svg = str(charts.time_chart(times, series, step=3600, label="Requests", kind="stacked", integer=True))
    titles = re.findall(r'<rect class="hit"[^>]*><title>([^<]*)</title>', svg)
    assert titles[1] == f"{_at(times[1])} UTC\nok: 2\nerrors: 1"
    data = charts.chart_data(svg)
    assert data["times"][1] == f"{_at(times[1])} UTC" and [s["name"] for s in data["series"]] == ["ok", "errors"]
    # labels are HTML and an unscaled SVG: no text inside the stretched plot
    assert "<text" not in _plot(svg) and 'preserveAspectRatio="none"' in svg


def test_no_data_says_so() -> None:
    svg = str(charts.time_chart([T0, T0 + 60], [charts.Series("x", [None, None])], step=60, label="L"))
    assert "No data in this range" in svg


# ---- bucket choice -------------------------------------------------------------------------------------------


def _view(span: float, until: float = T0) -> View:
    return View(range=None, since=until - span, until=until, filters=Filters(since=until - span, until=until))


def _series(view: View, busy_from: float) -> list[dict[str, float]]:
    step = view.step
    first = int(view.since // step * step)
    return [{"ts": ts, "requests": 3 if ts + step > busy_from else 0} for ts in range(first, int(view.until), step)]


def test_bucket_size_per_range() -> None:
    assert step_for(3600) == 60 and step_for(3 * 3600) == 60
    assert step_for(DAY) == 3600 and step_for(7 * DAY) == 3600 and step_for(30 * DAY) == DAY


def test_a_day_with_an_hour_of_data_gets_minutes_from_a_quarter_hour_before_it() -> None:
    view = _view(DAY)
    window = chart_window(view, _series(view, T0 - 3000))
    assert window is not None and window.step == 60
    assert window.since % 900 == 0 and T0 - 3600 - 3600 < window.since <= T0 - 3000


def test_a_month_with_two_days_of_data_gets_hours() -> None:
    view = _view(30 * DAY)
    window = chart_window(view, _series(view, T0 - 2 * DAY))
    assert window is not None and window.step == 3600 and window.since % (6 * 3600) == 0


def test_ranges_with_data_across_them_or_short_ones_are_charted_whole() -> None:
    day = _view(DAY)
    assert chart_window(day, _series(day, day.since)) is None
    assert chart_window(day, _series(day, T0 - 12 * 3600)) is None  # half the range has data
    assert chart_window(day, [{"ts": p["ts"], "requests": 0} for p in _series(day, 0)]) is None
    hour = _view(3600)
    assert chart_window(hour, _series(hour, T0 - 300)) is None  # minutes already


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    monitor = Monitor(Path(tmp_path_factory.mktemp("sparse")) / "m.db")
    seed(monitor, 120, now=time.time(), days=1 / 48)  # 30 minutes of calls
    with TestClient(host_app(monitor, "/m")) as client:
        yield client
    monitor.close()


@pytest.mark.parametrize("path", ["/m/fragments/overview/charts", "/m/costs", "/m/errors"])
def test_pages_chart_a_sparse_day_in_minutes_and_say_where_they_start(sparse: TestClient, path: str) -> None:
    response = sparse.get(path, params={"range": "24h"})
    assert response.status_code == 200
    html = response.text
    assert "per minute" in html and "no calls earlier in the range" in html
    data = [charts.chart_data(m) for m in re.findall(r'<div class="tchart" data-chart="[^"]*"', html)]
    assert data and all(len(d["times"]) <= 60 for d in data)  # not 1,440 minutes: from shortly before the calls
