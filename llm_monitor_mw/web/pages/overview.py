"""The overview page: KPI cards against the previous period, time-series charts, and the top models, providers,
routes, users and tags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import charts
from .base import Dashboard, Data, Handler, Region
from .view import STEP_NAMES
from .widgets import Chart, Kpi, change, pct_axis, with_share


def kpis(cur: dict[str, Any], prev: dict[str, Any]) -> list[Kpi]:
    unknown = cur["cost_unknown"]
    return [
        Kpi("Requests", charts.fmt_int(cur["requests"]), change(cur["requests"], prev["requests"]), None),
        Kpi(
            "Error rate",
            charts.fmt_pct(cur["error_rate"], 2),
            change(cur["error_rate"], prev["error_rate"]),
            "up",
            f"{charts.fmt_int(cur['errors'])} errors",
        ),
        Kpi(
            "Input tokens",
            charts.fmt_compact(cur["input_tokens"]),
            change(cur["input_tokens"], prev["input_tokens"]),
            None,
        ),
        Kpi(
            "Output tokens",
            charts.fmt_compact(cur["output_tokens"]),
            change(cur["output_tokens"], prev["output_tokens"]),
            None,
        ),
        Kpi(
            "Cost",
            charts.fmt_usd(cur["cost_usd"]),
            change(cur["cost_usd"], prev["cost_usd"]),
            "up",
            f"{charts.fmt_int(unknown)} calls unpriced" if unknown else "",
        ),
        Kpi(
            "Latency p50",
            charts.fmt_ms(cur["latency_p50_ms"]),
            change(cur["latency_p50_ms"], prev["latency_p50_ms"]),
            "up",
        ),
        Kpi(
            "Latency p95",
            charts.fmt_ms(cur["latency_p95_ms"]),
            change(cur["latency_p95_ms"], prev["latency_p95_ms"]),
            "up",
        ),
        Kpi(
            "TTFT p50",
            charts.fmt_ms(cur["ttft_p50_ms"]),
            change(cur["ttft_p50_ms"], prev["ttft_p50_ms"]),
            "up",
            "streamed calls",
        ),
    ]


def series_charts(series: list[dict[str, Any]], step: int) -> list[Chart]:
    times = [p["ts"] for p in series]
    col = {k: [p[k] for p in series] for k in ("requests", "errors", "input_tokens", "output_tokens", "cost_usd")}
    ok = [r - e for r, e in zip(col["requests"], col["errors"], strict=True)]
    rate = [p["error_rate"] for p in series]
    latency = [
        charts.Series("p50", [p["latency_p50_ms"] for p in series], "s1"),
        charts.Series("p95", [p["latency_p95_ms"] for p in series], "s3"),
    ]
    ttft = [
        charts.Series("p50", [p["ttft_p50_ms"] for p in series], "s2"),
        charts.Series("p95", [p["ttft_p95_ms"] for p in series], "s5"),
    ]
    requests = [charts.Series("ok", ok, "ok"), charts.Series("errors", col["errors"], "err")]
    tokens = [charts.Series("input", col["input_tokens"], "s1"), charts.Series("output", col["output_tokens"], "s2")]
    cost = [charts.Series("cost", col["cost_usd"], "s4")]
    err = [charts.Series("error rate", rate, "err")]
    per = STEP_NAMES[step]
    return [
        Chart(
            f"Requests per {per}",
            charts.time_chart(times, requests, step=step, label="Requests", kind="stacked"),
            charts.legend(requests),
        ),
        Chart(
            "Error rate",
            charts.time_chart(times, err, step=step, label="Error rate", fmt=pct_axis),
            charts.legend(err),
        ),
        Chart(f"Tokens per {per}", charts.time_chart(times, tokens, step=step, label="Tokens"), charts.legend(tokens)),
        Chart(
            f"Cost per {per}",
            charts.time_chart(times, cost, step=step, label="Cost", fmt=charts.fmt_usd, kind="bars"),
            charts.legend(cost),
        ),
        Chart(
            "Latency",
            charts.time_chart(times, latency, step=step, label="Latency", fmt=charts.fmt_ms),
            charts.legend(latency),
            "estimated from log histograms, ±5%",
        ),
        Chart(
            "Time to first token",
            charts.time_chart(times, ttft, step=step, label="Time to first token", fmt=charts.fmt_ms),
            charts.legend(ttft),
            "streamed calls; estimated from log histograms, ±5%",
        ),
    ]


def kpis_region(data: Data) -> dict[str, Any]:
    return {"kpis": kpis(data.totals, data.previous), "totals": data.totals}


def charts_region(data: Data) -> dict[str, Any]:
    return {"charts": series_charts(data.report.series, data.view.step)}


def top_region(data: Data) -> dict[str, Any]:
    view = data.view
    key = "cost_usd" if view.rank == "cost" else "requests"

    def top(rows: list[dict[str, Any]], name: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
        rows = sorted(rows, key=lambda r: (-(r[key] or 0), name(r)))[:8]
        return [{**r, "name": name(r)} for r in with_share(rows, key)]

    report = data.report if "report" in data.__dict__ else data.analytics.report(view.filters, latency=False)
    dims = {d: data.dim(d, view.rank, 8) for d in ("route", "user", "tag")}
    return {
        "rank_key": key,
        "tops": [
            ("Models", "model", top(report.by_model, lambda r: r["model"] or "(unknown)")),
            ("Providers", "provider", top(report.by_provider, lambda r: r["provider"])),
            ("Routes", "route", top(dims["route"], lambda r: r["value"])),
            ("Users", "user", top(dims["user"], lambda r: r["value"])),
            ("Tags", "tag", top(dims["tag"], lambda r: r["value"])),
        ],
    }


REGIONS: dict[str, Region] = {"charts": charts_region, "kpis": kpis_region, "top": top_region}
"""Charts first: the KPIs and top lists then reuse the series' report instead of querying again."""


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/`` and its regions' fragments."""
    return dash.handlers("overview", "/", REGIONS)
