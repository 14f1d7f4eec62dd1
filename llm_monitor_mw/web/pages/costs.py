"""The costs page: spend, spend per day and per 1k requests, cached input, spend over time, per month, per model,
and per user, route and tag."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from .. import charts
from .base import Dashboard, Data, Handler
from .widgets import Chart, Kpi, change, with_share


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


def body_region(data: Data) -> dict[str, Any]:
    view = data.view
    cur, prev, series = data.totals, data.previous, data.report.series
    times = [p["ts"] for p in series]
    spend = [charts.Series("cost", [p["cost_usd"] for p in series], "s4")]
    running = [charts.Series("running total", list(itertools.accumulate(p["cost_usd"] for p in series)), "s1")]
    days = max(view.span / 86400, 1 / 24)
    return {
        "totals": cur,
        "kpis": [
            Kpi("Spend", charts.fmt_usd(cur["cost_usd"]), change(cur["cost_usd"], prev["cost_usd"]), "up"),
            Kpi("Per day", charts.fmt_usd(cur["cost_usd"] / days), None, None, "average over the range"),
            Kpi(
                "Per 1k requests",
                charts.fmt_usd(cur["cost_usd"] / cur["requests"] * 1000) if cur["requests"] else "—",
                None,
                None,
            ),
            Kpi(
                "Cached input",
                charts.fmt_pct(cur["cached_share"]),
                None,
                None,
                f"{charts.fmt_compact(cur['cached_tokens'])} of {charts.fmt_compact(cur['input_tokens'])} tokens",
            ),
        ],
        "spend_charts": [
            Chart(
                f"Spend per {view.step_name}",
                charts.time_chart(times, spend, step=view.step, label="Spend", fmt=charts.fmt_usd, kind="bars"),
                charts.legend(spend),
            ),
            Chart(
                "Cumulative spend",
                charts.time_chart(times, running, step=view.step, label="Cumulative spend", fmt=charts.fmt_usd),
                charts.legend(running),
                f"{charts.fmt_usd(cur['cost_usd'])} over the {charts.fmt_span(view.span)}",
            ),
        ],
        "months": months(series) if view.span > 31 * 86400 else [],
        "by_model": with_share(sorted(data.report.by_model, key=lambda r: -r["cost_usd"]), "cost_usd"),
        "cost_dims": [
            ("Users", "user", with_share(data.dim("user", "cost", 15), "cost_usd")),
            ("Routes", "route", with_share(data.dim("route", "cost", 15), "cost_usd")),
            ("Tags", "tag", with_share(data.dim("tag", "cost", 15), "cost_usd")),
        ],
    }


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/costs`` and its region's fragment."""
    return dash.handlers("costs", "/costs", {"body": body_region})
