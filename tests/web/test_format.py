"""The one formatting module: money by significant figures, unknown as —, a nonzero amount never as zero."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_monitor_mw.store import cells
from llm_monitor_mw.web import charts
from llm_monitor_mw.web import format as fm


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.6e-6, "$0.0000036"),
        (0.0042, "$0.0042"),
        (0.00421, "$0.0042"),
        (0.42, "$0.42"),
        (0.1, "$0.10"),
        (1.234, "$1.23"),
        (12.3, "$12.30"),
        (123.4, "$123"),
        (12_345, "$12.3k"),
        (1_234_000, "$1.23M"),
        (4.5e9, "$4.5B"),
        (0, "$0"),
        (0.0, "$0"),
        (None, "—"),
        (math.nan, "—"),
        (math.inf, "—"),
        (-0.5, "-$0.50"),
        (-3.6e-6, "-$0.0000036"),
        (1e-12, "$0.000000000001"),
        # rounding edges: the rounded value decides the form, so no "$0.0100" or "$100.00"
        (0.0099999, "$0.01"),
        (0.99996, "$1.00"),
        (99.996, "$100"),
        (999.6, "$1k"),
        (999_600, "$1M"),
    ],
)
def test_money(value: float | None, text: str) -> None:
    assert fm.money(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 ms"),
        (0.42, "0.42 ms"),
        (3.5, "3.5 ms"),
        (84.2, "84 ms"),
        (840.2, "840 ms"),
        (999.7, "1 s"),
        (1240, "1.24 s"),
        (12_400, "12.4 s"),
        (150_000, "2.5 min"),
        (5_400_000, "1.5 h"),
        (-12, "-12 ms"),
        (None, "—"),
    ],
)
def test_duration_ms(value: float | None, text: str) -> None:
    assert fm.duration_ms(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.07285, "7.3 %"),
        (0.5, "50 %"),
        (1, "100 %"),
        (0.125, "12.5 %"),
        (0.0042, "0.42 %"),
        (1e-7, "<0.01 %"),
        (0, "0 %"),
        (None, "—"),
        (-0.05, "-5 %"),
    ],
)
def test_percent(value: float | None, text: str) -> None:
    assert fm.percent(value) == text


def test_percent_with_fixed_decimals_never_rounds_to_zero() -> None:
    assert fm.percent(0.0312, 2) == "3.12 %"
    assert fm.percent(0.00001, 2) == "<0.01 %"
    assert fm.percent(0.003, 0) == "<1 %"
    assert fm.percent(0, 2) == "0 %"


def test_integers_compact_times_and_spans() -> None:
    assert fm.integer(12_345.4) == "12,345" and fm.integer(-3) == "-3" and fm.integer(None) == "—"
    assert fm.compact(950) == "950" and fm.compact(12_345) == "12.3k" and fm.compact(4_560_000) == "4.56M"
    assert fm.compact(0.25) == "0.25" and fm.compact(999_999) == "1M" and fm.compact(None) == "—"
    assert fm.utc(0) == "1970-01-01 00:00:00" and fm.utc(0, 60) == "1970-01-01 00:00" and fm.utc(None) == "—"
    assert fm.utc_ms(1.042) == "00:00:01.042" and fm.utc_ms(1.042, date=True) == "1970-01-01 00:00:01.042"
    assert fm.utc_ms(59.9999) == "00:00:59.999"  # truncated: never the next second
    assert fm.span(86400) == "24 hours" and fm.span(7 * 86400) == "7 days" and fm.span(900) == "15 minutes"


def test_old_names_are_the_format_functions() -> None:
    assert charts.fmt_usd is fm.money and charts.fmt_ms is fm.duration_ms and charts.fmt_pct is fm.percent
    assert charts.fmt_int is fm.integer and charts.fmt_compact is fm.compact and charts.fmt_time is fm.utc


def test_exports_write_every_digit_and_no_exponent() -> None:
    assert cells.plain(3.6e-6) == "0.0000036" and cells.plain(0.1 + 0.2) == "0.30000000000000004"
    assert cells.csv_cell(3.6e-6) == "0.0000036" and cells.csv_cell(2.0) == "2.0"
    text = cells.dumps({"cost_usd": 3.6e-6, "nested": [1.5e-9], "n": 3, "ok": True, "none": None})
    assert "e-" not in text and "0.0000036" in text
    assert json.loads(text) == {"cost_usd": 3.6e-6, "nested": [1.5e-9], "n": 3, "ok": True, "none": None}


amounts = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)


@given(amounts)
def test_a_nonzero_amount_never_reads_as_zero(value: float) -> None:
    text = fm.money(value)
    digits = re.sub(r"[^0-9]", "", text)
    if value == 0:
        assert text == "$0"
    else:
        assert digits.strip("0"), text
        assert text.startswith("-") == (value < 0)


@given(st.floats(min_value=1e-300, max_value=1e15))
def test_money_keeps_two_significant_figures(value: float) -> None:
    text = fm.money(value)
    number = float(re.sub(r"[$,kMBT]", "", text))
    scale = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(text[-1], 1)
    assert math.isclose(number * scale, value, rel_tol=0.05), text


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.sampled_from([fm.money, fm.duration_ms, fm.compact]))
def test_tick_labels_are_distinct(top: float, fmt: charts.Formatter) -> None:
    ticks = charts.nice_ticks(top)
    labels = charts.axis_labels(ticks, fmt)
    assert len(set(labels)) == len(labels), labels


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_percent_tick_labels_are_distinct(top: float) -> None:
    labels = charts.axis_labels(charts.nice_ticks(top), fm.percent)
    assert len(set(labels)) == len(labels), labels


@given(st.floats(min_value=1e-9, max_value=1))
def test_tiny_nonzero_percent_is_never_zero(value: float) -> None:
    assert fm.percent(value) != "0 %" and fm.percent(value, 0) != "0 %"
