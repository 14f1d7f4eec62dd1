"""The errors page: errors, error rate, 429s and 5xx against the previous period, over time, by model, status and
type, and the latest failed calls."""

from __future__ import annotations

from typing import Any

from .. import charts
from .. import format as fm
from .base import Dashboard, Data, Handler
from .view import STEP_NAMES, chart_series
from .widgets import Chart, Kpi, change, with_share


def error_charts(data: Data) -> list[Chart]:
    """Errors per bucket (stacked bars, 429s apart; an empty bucket is zero) and the error rate (a line with a
    gap where there were no calls), from the first call on when the range has little data."""
    series, step, note = chart_series(data)
    times = [p["ts"] for p in series]
    counts = [
        charts.Series("other errors", [p["errors"] - p["n429"] for p in series], "err"),
        charts.Series("429 rate limited", [p["n429"] for p in series], "warn"),
    ]
    rate = [charts.Series("error rate", [p["error_rate"] for p in series], "err")]
    return [
        Chart(
            f"Errors per {STEP_NAMES[step]}",
            charts.time_chart(times, counts, step=step, label="Errors", kind="stacked", integer=True),
            charts.legend(counts),
            note,
        ),
        Chart(
            "Error rate",
            charts.time_chart(times, rate, step=step, label="Error rate", fmt=fm.percent),
            charts.legend(rate),
            note,
        ),
    ]


def body_region(data: Data) -> dict[str, Any]:
    view = data.view
    cur, prev = data.totals, data.previous
    statuses = data.dim("status", "errors", 20, errors_only=True)
    server = sum(r["errors"] for r in statuses if r["value"].startswith("5"))
    models = [r for r in data.report.by_model if r["errors"]]
    return {
        "totals": cur,
        "kpis": [
            Kpi("Errors", charts.fmt_int(cur["errors"]), change(cur["errors"], prev["errors"]), "up"),
            Kpi(
                "Error rate",
                charts.fmt_pct(cur["error_rate"], 2),
                change(cur["error_rate"], prev["error_rate"]),
                "up",
            ),
            Kpi("Rate limited (429)", charts.fmt_int(cur["n429"]), change(cur["n429"], prev["n429"]), "up"),
            Kpi("Server errors (5xx)", charts.fmt_int(server), None, None),
        ],
        "charts": error_charts(data),
        "by_model": sorted(models, key=lambda r: (-r["errors"], r["provider"], r["model"])),
        "by_status": with_share(statuses, "errors"),
        "by_type": with_share(data.dim("error_type", "errors", 20, errors_only=True), "errors"),
        "latest": data.analytics.latest_errors(view.filters, 25),
    }


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/errors`` and its region's fragment."""
    return dash.handlers("errors", "/errors", {"body": body_region})
