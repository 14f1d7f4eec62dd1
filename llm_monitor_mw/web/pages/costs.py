"""The costs page: spend, spend per day and per 1k requests, cached input, spend over time, per month, per model,
per user, route and tag, and per API key."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from .. import charts
from .. import format as fm
from ..keys import KeyNames
from .base import Dashboard, Data, Handler
from .view import STEP_NAMES, chart_series
from .widgets import Chart, Kpi, change, unpriced_calls, unpriced_models, with_share


def months(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Day buckets summed per calendar month (UTC)."""
    months: dict[str, dict[str, Any]] = {}
    for p in series:
        key = datetime.fromtimestamp(p["ts"], UTC).strftime("%Y-%m")
        m = months.setdefault(
            key, {"month": key, "requests": 0, "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
        )
        for k in ("requests", "cost_usd", "input_tokens", "output_tokens"):
            m[k] += p[k] or 0
    return list(months.values())


def per_day(cost: float, span: float) -> Kpi:
    """Spend per day: under a day, a projection at the range's rate (labelled so, with its sum); from a day on,
    the average over the range's days."""
    days = span / 86400
    if days < 1:
        return Kpi(
            "Projected per day",
            fm.money(cost / days),
            None,
            None,
            f"{fm.money(cost)} in {fm.span(span)}, scaled to 24 hours",
        )
    return Kpi("Average per day", fm.money(cost / days), None, None, f"over {fm.span(span)}")


def cost_kpis(cur: dict[str, Any], prev: dict[str, Any], span: float) -> list[Kpi]:
    """Spend, spend per day, per 1k priced requests and the cached share of input (``—`` when nothing is priced)."""
    priced = cur.get("cost_n", 0) or 0
    cost = cur["cost_usd"]
    if not priced or cost is None:
        reason = "no priced calls in the range"
        return [
            Kpi("Spend", "—", None, None, reason),
            Kpi("Per day", "—", None, None, reason),
            Kpi("Per 1k requests", "—", None, None, reason),
            cached_kpi(cur),
        ]
    return [
        Kpi("Spend", fm.money(cost), change(cost, prev["cost_usd"]), "up"),
        per_day(cost, span),
        Kpi(
            "Per 1k requests",
            fm.money(cost / priced * 1000),
            None,
            None,
            "priced calls" if priced == cur["requests"] else f"over the {fm.integer(priced)} priced calls",
        ),
        cached_kpi(cur),
    ]


def cached_kpi(cur: dict[str, Any]) -> Kpi:
    return Kpi(
        "Cached input",
        fm.percent(cur["cached_share"]),
        None,
        None,
        f"{fm.compact(cur['cached_tokens'])} of {fm.compact(cur['input_tokens'])} tokens",
    )


def spend_charts(data: Data) -> list[Chart]:
    """Spend per bucket (bars: an empty bucket is $0) and the running total, from the first call on when the
    range has little data (see :func:`~.view.chart_series`)."""
    view = data.view
    series, step, note = chart_series(data)
    times = [p["ts"] for p in series]
    spend = [charts.Series("cost", [p["cost_usd"] for p in series], "s4")]
    total = list(itertools.accumulate(p["cost_usd"] or 0 for p in series))
    running = [charts.Series("running total", total, "s1")]
    over = f"{fm.money(data.totals['cost_usd'])} over the {fm.span(view.span)}"
    return [
        Chart(
            f"Spend per {STEP_NAMES[step]}",
            charts.time_chart(times, spend, step=step, label="Spend", fmt=fm.money, kind="bars"),
            charts.legend(spend),
            note,
        ),
        Chart(
            "Cumulative spend",
            charts.time_chart(times, running, step=step, label="Cumulative spend", fmt=fm.money),
            charts.legend(running),
            " · ".join(t for t in (over, note) if t),
        ),
    ]


KEY_ROWS = 15
"""Keys the "Spend by API key" panel lists."""


def key_rows(data: Data, names: KeyNames) -> list[dict[str, Any]]:
    """The keys with the most spend in the view (then the busiest), labelled (see :class:`~..keys.KeyNames`)."""
    return names.rows(data.analytics.by_key(data.view.filters, order="cost", limit=KEY_ROWS))


def body_region(data: Data, names: KeyNames | None = None) -> dict[str, Any]:
    view = data.view
    cur, prev, series = data.totals, data.previous, data.report.series
    return {
        "totals": cur,
        "kpis": cost_kpis(cur, prev, view.span),
        "unpriced_calls": unpriced_calls(data.unpriced),
        "unpriced_models": unpriced_models(data.unpriced, 5),
        "spend_charts": spend_charts(data),
        "months": months(series) if view.span > 31 * 86400 else [],
        "by_model": with_share(sorted(data.report.by_model, key=lambda r: -r["cost_usd"]), "cost_usd"),
        "cost_dims": [
            ("Users", "user", with_share(data.dim("user", "cost", 15), "cost_usd")),
            ("Routes", "route", with_share(data.dim("route", "cost", 15), "cost_usd")),
            ("Tags", "tag", with_share(data.dim("tag", "cost", 15), "cost_usd")),
        ],
        "by_key": key_rows(data, names or KeyNames()),
        "key_filter": (names or KeyNames()).name(view.filters.key) or view.filters.key,
    }


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/costs`` and its region's fragment."""
    return dash.handlers("costs", "/costs", {"body": lambda data: body_region(data, dash.key_names)})
