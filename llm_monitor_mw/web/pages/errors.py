"""The errors page: errors, error rate, 429s and 5xx against the previous period, over time, by model, status and
type, and the latest failed calls."""

from __future__ import annotations

from typing import Any

from .. import charts
from .base import Dashboard, Data, Handler
from .widgets import Chart, Kpi, change, pct_axis, with_share


def body_region(data: Data) -> dict[str, Any]:
    view = data.view
    cur, prev, series = data.totals, data.previous, data.report.series
    times = [p["ts"] for p in series]
    counts = [
        charts.Series("other errors", [p["errors"] - p["n429"] for p in series], "err"),
        charts.Series("429 rate limited", [p["n429"] for p in series], "warn"),
    ]
    rate = [charts.Series("error rate", [p["error_rate"] for p in series], "err")]
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
        "charts": [
            Chart(
                f"Errors per {view.step_name}",
                charts.time_chart(times, counts, step=view.step, label="Errors", kind="stacked"),
                charts.legend(counts),
            ),
            Chart(
                "Error rate",
                charts.time_chart(times, rate, step=view.step, label="Error rate", fmt=pct_axis),
                charts.legend(rate),
            ),
        ],
        "by_model": sorted(models, key=lambda r: (-r["errors"], r["provider"], r["model"])),
        "by_status": with_share(statuses, "errors"),
        "by_type": with_share(data.dim("error_type", "errors", 20, errors_only=True), "errors"),
        "latest": data.analytics.latest_errors(view.filters, 25),
    }


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/errors`` and its region's fragment."""
    return dash.handlers("errors", "/errors", {"body": body_region})
