"""The overview page: KPI cards against the previous period, time-series charts, and the top models, providers,
routes, users and tags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import charts
from .. import format as fm
from .base import Dashboard, Data, Handler, Region
from .view import STEP_NAMES, chart_series
from .widgets import Chart, Kpi, change, unpriced_calls, unpriced_models, with_share


def kpis(cur: dict[str, Any], prev: dict[str, Any], unpriced: list[dict[str, Any]] | None = None) -> list[Kpi]:
    """The eight KPI cards; ``unpriced`` (calls with tokens but no price, by model) names what the cost leaves out."""
    unpriced = unpriced or []
    requests = cur["requests"]
    tools = cur.get("tool_requests")  # None: this store does not know which calls asked for tools
    usage = requests == 0 or bool(cur.get("tokens_n", 1))
    priced = requests == 0 or bool(cur.get("cost_n", 1))
    missing = unpriced_calls(unpriced)
    return [
        Kpi(
            "Requests",
            fm.integer(requests),
            change(requests, prev["requests"]),
            None,
            "" if tools is None else f"{fm.integer(tools)} asked for tools",
        ),
        Kpi(
            "Error rate",
            fm.percent(cur["error_rate"], 2),
            change(cur["error_rate"], prev["error_rate"]),
            "up",
            f"{fm.integer(cur['errors'])} errors",
        ),
        Kpi(
            "Input tokens",
            fm.compact(cur["input_tokens"]) if usage else "—",
            change(cur["input_tokens"], prev["input_tokens"]) if usage else None,
            None,
            "" if usage else "no call reported usage",
        ),
        Kpi(
            "Output tokens",
            fm.compact(cur["output_tokens"]) if usage else "—",
            change(cur["output_tokens"], prev["output_tokens"]) if usage else None,
            None,
            "" if usage else "no call reported usage",
        ),
        Kpi(
            "Cost",
            fm.money(cur["cost_usd"]) if priced else "—",
            change(cur["cost_usd"], prev["cost_usd"]) if priced else None,
            "up",
            (f"+ {fm.integer(missing)} unpriced: {unpriced_models(unpriced, 2)}" if missing else "")
            or ("" if priced else "no priced calls"),
        ),
        Kpi(
            "Latency p50",
            fm.duration_ms(cur["latency_p50_ms"]),
            change(cur["latency_p50_ms"], prev["latency_p50_ms"]),
            "up",
        ),
        Kpi(
            "Latency p95",
            fm.duration_ms(cur["latency_p95_ms"]),
            change(cur["latency_p95_ms"], prev["latency_p95_ms"]),
            "up",
        ),
        Kpi(
            "TTFT p50",
            fm.duration_ms(cur["ttft_p50_ms"]),
            change(cur["ttft_p50_ms"], prev["ttft_p50_ms"]),
            "up",
            "streamed calls",
        ),
    ]


def series_charts(series: list[dict[str, Any]], step: int, note: str = "") -> list[Chart]:
    """The overview's six time charts of ``series`` (buckets of ``step`` seconds); ``note`` is added to each
    (e.g. where a cropped chart starts). Counts and cost are bars (an empty bucket is a zero), rates and
    percentiles lines (an empty bucket is a gap: nothing was measured)."""
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

    def chart(title: str, data: list[charts.Series], estimate: str = "", **kw: Any) -> Chart:
        svg = charts.time_chart(times, data, step=step, label=title, **kw)
        return Chart(title, svg, charts.legend(data), " · ".join(t for t in (estimate, note) if t))

    histograms = "estimated from log histograms, ±5 %"
    return [
        chart(f"Requests per {per}", requests, kind="stacked", integer=True),
        chart("Error rate", err, fmt=fm.percent),
        chart(f"Tokens per {per}", tokens, kind="stacked", integer=True),
        chart(f"Cost per {per}", cost, fmt=fm.money, kind="bars"),
        chart("Latency", latency, histograms, fmt=fm.duration_ms),
        chart("Time to first token", ttft, f"streamed calls; {histograms}", fmt=fm.duration_ms),
    ]


def kpis_region(data: Data) -> dict[str, Any]:
    return {"kpis": kpis(data.totals, data.previous, data.unpriced), "totals": data.totals}


def charts_region(data: Data) -> dict[str, Any]:
    series, step, note = chart_series(data)
    return {"charts": series_charts(series, step, note)}


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
