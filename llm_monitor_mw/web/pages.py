"""Dashboard pages and their htmx partials: overview, requests (+ CSV/JSON export), request detail, costs, errors.

Every page is a full HTML page on a direct load. With ``HX-Request`` (and not a history restore) a page URL answers
with its content partial (tabs, toolbar and regions: what filter forms swap into ``#content``), and each
``fragments/...`` URL answers with one auto-refreshed region; loaded directly, a fragment URL renders its page.
All of these responses carry ``Vary: HX-Request``. Handlers are plain functions: the app runs them (and their
SQLite reads) behind its :class:`~.gate.Gate`, in threads of its own, never in the pool the host app uses.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..store import cells
from ..store.analytics import SORTABLE, Analytics, Report
from ..store.dbfile import iso
from ..store.queries import API_COLUMNS, Filters
from . import charts
from .gate import Gate
from .params import (
    ParamError,
    check_text,
    parse_choice,
    parse_id,
    parse_int,
    parse_tag,
    parse_text,
    parse_time,
)
from .templating import render
from .urls import url_for

if TYPE_CHECKING:
    from ..monitor import Monitor

RANGES: dict[str, int] = {
    "15m": 15 * 60,
    "1h": 3600,
    "6h": 6 * 3600,
    "24h": 86400,
    "7d": 7 * 86400,
    "30d": 30 * 86400,
    "90d": 90 * 86400,
}
DEFAULT_RANGE = "24h"
PAGE_SIZES = (25, 50, 100, 200)
EXPORT_CAP = 100_000
"""Most rows one CSV/JSON export returns."""
REFRESH_TRIGGER = "every 10s, refresh-now"
"""``hx-trigger`` of auto-refreshed regions (``static/app.js`` pauses them and fires ``refresh-now`` on resume)."""
STEP_NAMES = {60: "minute", 3600: "hour", 86400: "day"}
PAGE_PATHS = {"overview": "", "requests": "requests", "costs": "costs", "errors": "errors"}


def step_for(span: float) -> int:
    """Chart bucket size for a range: a minute up to 3 h, an hour up to 7 d, a day beyond."""
    if span <= 3 * 3600:
        return 60
    if span <= 7 * 86400:
        return 3600
    return 86400


# ---- what a page shows: parsed from (and turned back into) the query string ---------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    """The time range, filters and list state of one request, parsed from its query string."""

    range: str | None
    """A preset key (``24h``), or ``None`` for a custom ``since``/``until``."""
    since: float
    until: float
    filters: Filters
    raw: dict[str, str] = field(default_factory=dict)
    """The query parameters as given (non-empty ones), to rebuild URLs."""
    sort: str = "time"
    descending: bool = True
    limit: int = 50
    offset: int = 0
    rank: str = "cost"

    @property
    def span(self) -> float:
        return self.until - self.since

    @property
    def step(self) -> int:
        return step_for(self.span)

    @property
    def step_name(self) -> str:
        return STEP_NAMES[self.step]

    @property
    def previous(self) -> Filters:
        """The same filters over the period of equal length just before this one."""
        return replace(self.filters, since=self.since - self.span, until=self.since)

    @property
    def filtered(self) -> bool:
        """Whether anything beyond the time range narrows the rows."""
        f = self.filters
        return any(v is not None for v in (f.provider, f.model, f.ok, f.route, f.user, f.tag)) or bool(f.q)

    def query(self, *, keep: tuple[str, ...] | None = None, **changes: object) -> dict[str, str]:
        """The query string reproducing this view, with ``changes`` (``None`` drops a parameter).

        ``keep`` limits the result to those parameters (before ``changes``), e.g. the range for navigation.
        """
        params = {k: v for k, v in self.raw.items() if keep is None or k in keep}
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        return params

    def nav(self) -> dict[str, str]:
        """What the tabs carry from page to page: the range and the provider/model filters."""
        return self.query(keep=("range", "since", "until", "provider", "model"))

    def input_time(self, which: str) -> str:
        """``since``/``until`` for a ``datetime-local`` input (UTC, minutes)."""
        ts = self.since if which == "since" else self.until
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")


QUERY_KEYS = ("range", "since", "until", "provider", "model", "status", "route", "user", "tag", "q")
MAX_PARAM = 400
"""Longest value of any known parameter (the text filters have tighter limits of their own)."""
LIST_KEYS = ("sort", "dir", "limit", "offset", "rank")


def parse_view(request: Request, *, now: float | None = None) -> View:
    """Parse the query string into a :class:`View`; raises :class:`ParamError` naming a bad parameter."""
    q = request.query_params
    now = time.time() if now is None else now
    raw = {k: check_text(k, q[k], max_length=MAX_PARAM) for k in (*QUERY_KEYS, *LIST_KEYS) if q.get(k)}
    until = parse_time("until", q.get("until"), now=now)
    since = parse_time("since", q.get("since"), now=now)
    end = now if until is None else until
    preset: str | None = None
    if since is None:
        preset = parse_choice("range", q.get("range"), tuple(RANGES)) or DEFAULT_RANGE
        since = end - RANGES[preset]
    elif "range" in raw:
        raise ParamError("range", "give either range or since/until, not both")
    if since >= end:
        raise ParamError("until" if until is not None else "since", "the range must end after it starts")
    if end - since > 400 * 86400:
        raise ParamError("since", "ranges longer than 400 days are not supported")
    status = parse_choice("status", q.get("status"), ("ok", "error"))
    tag = parse_tag(q.get("tag"))
    sort = q.get("sort") or "time"
    if sort not in SORTABLE:
        raise ParamError("sort", f"must be one of {', '.join(SORTABLE)}")
    direction = parse_choice("dir", q.get("dir"), ("asc", "desc")) or "desc"
    limit = parse_int("limit", q.get("limit"), default=50, minimum=1, maximum=max(PAGE_SIZES))
    offset = parse_int("offset", q.get("offset"), default=0, minimum=0, maximum=10**9)
    rank = parse_choice("rank", q.get("rank"), ("cost", "requests")) or "cost"
    filters = Filters(
        since=since,
        until=end,
        provider=parse_text("provider", q.get("provider")),
        model=parse_text("model", q.get("model")),
        ok=None if status is None else status == "ok",
        route=parse_text("route", q.get("route")),
        user=parse_text("user", q.get("user")),
        tag=tag,
        q=parse_text("q", q.get("q"), strip=True),
    )
    return View(
        range=preset,
        since=since,
        until=end,
        filters=filters,
        raw=raw,
        sort=sort,
        descending=direction == "desc",
        limit=limit,
        offset=offset,
        rank=rank,
    )


# ---- view models ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpi:
    """One KPI card: the figure, and its change against the previous period."""

    label: str
    value: str
    change: float | None
    """Relative change (0.12 = +12 %); ``None`` when there is nothing to compare with."""
    worse_when: str | None
    """``up``/``down``: which direction is bad (colours the change); ``None``: neutral."""
    hint: str = ""

    @property
    def tone(self) -> str:
        if self.change is None or self.worse_when is None or abs(self.change) < 0.005:
            return "neutral"
        bad = self.change > 0 if self.worse_when == "up" else self.change < 0
        return "bad" if bad else "good"

    @property
    def change_text(self) -> str:
        if self.change is None:
            return "no previous data"
        arrow = "▲" if self.change > 0 else ("▼" if self.change < 0 else "")
        return f"{arrow} {abs(self.change) * 100:.0f}%" if abs(self.change) < 10 else f"{arrow} {self.change + 1:,.0f}x"


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change from ``previous`` to ``current`` (``None`` when either is unknown or previous is 0)."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / previous


def _kpis(cur: dict[str, Any], prev: dict[str, Any]) -> list[Kpi]:
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


@dataclass(frozen=True, slots=True)
class Chart:
    """A titled chart: its SVG and legend."""

    title: str
    svg: Any
    legend: Any = ""
    note: str = ""


def _series_charts(series: list[dict[str, Any]], step: int) -> list[Chart]:
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
            charts.time_chart(times, err, step=step, label="Error rate", fmt=_pct_axis),
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


def _pct_axis(value: float) -> str:
    return charts.fmt_pct(value, 0 if value >= 0.1 or value == 0 else 1)


def _with_share(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    total = sum(r[key] or 0 for r in rows) or 0
    return [{**r, "share": (r[key] or 0) / total if total else None} for r in rows]


def _months(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


# ---- the pages --------------------------------------------------------------------------------------------------


class TTLCache:
    """Recent answers kept for ``ttl`` seconds: for figures that may be a minute old (dropdown values, the
    previous period's totals), so that every 10-second refresh does not recompute them."""

    def __init__(self, ttl: float = 60.0, size: int = 128) -> None:
        self.ttl = ttl
        self.size = size
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        value = compute()
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (now, value)
        return value


def cache_key(view: View) -> tuple[Any, ...]:
    """What identifies a view's range and filters for :class:`TTLCache` (a rolling preset by its name)."""
    when = view.range if view.range is not None else (view.since, view.until)
    return (when, replace(view.filters, since=None, until=None))


class Data:
    """The store's answers for one request, computed on first use and shared by the regions of a page."""

    def __init__(self, analytics: Analytics, view: View, cache: TTLCache, *, latency: bool = True) -> None:
        self.analytics = analytics
        self.view = view
        self.cache = cache
        self.latency = latency
        """Whether the page shows latency percentiles (they cost a histogram query)."""

    @cached_property
    def report(self) -> Report:
        """Totals, series and per-model sums of the range, bucketed by the view's step."""
        return self.analytics.report(self.view.filters, self.view.step, latency=self.latency)

    @property
    def totals(self) -> dict[str, Any]:
        """Totals of the range (from :attr:`report` if it was needed anyway, else a cheaper whole-range query)."""
        if "report" in self.__dict__:
            return self.report.totals
        return self.summary.totals

    @cached_property
    def summary(self) -> Report:
        """The range without a series (one bucket)."""
        return self.analytics.report(self.view.filters, latency=self.latency)

    @cached_property
    def previous(self) -> dict[str, Any]:
        """Totals of the period of equal length before the range (up to a minute old)."""
        key = ("previous", self.latency, *cache_key(self.view))
        return self.cache.get(key, lambda: self.analytics.report(self.view.previous, latency=self.latency).totals)

    @cached_property
    def facets(self) -> dict[str, list[str]]:
        """Values for the filter controls (up to a minute old)."""
        key = ("facets", cache_key(self.view)[0])
        return self.cache.get(key, lambda: self.analytics.facets(self.view.filters))

    def dim(self, dim: str, order: str, limit: int, *, errors_only: bool = False) -> list[dict[str, Any]]:
        return self.analytics.by_dim(self.view.filters, dim, order=order, limit=limit, errors_only=errors_only)


Region = Callable[[Data], dict[str, Any]]


def is_fragment(request: Request) -> bool:
    """An htmx request that wants a partial (history restores want the whole page)."""
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") != "true"


def render_page(env: Environment, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A dashboard page or partial: its regions poll with :data:`REFRESH_TRIGGER`; never cached, varies by htmx."""
    response = render(env, request, template, status_code, refresh=REFRESH_TRIGGER, **context)
    response.headers["Vary"] = "HX-Request"
    response.headers["Cache-Control"] = "no-store"
    return response


class Pages:
    """The handlers, bound to one monitor's data and the app's Jinja environment."""

    def __init__(self, monitor: Monitor, env: Environment) -> None:
        self.monitor = monitor
        self.env = env
        self.analytics = Analytics(monitor.db)
        self.cache = TTLCache()

    # -- plumbing --

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return render_page(self.env, request, template, status_code, **context)

    def _bad_request(self, request: Request, exc: ParamError) -> Response:
        return self._render(
            request,
            "error.html",
            400,
            status=400,
            title="Bad request",
            message=exc.message,
            parameter=exc.parameter,
            view=None,
            page=None,
        )

    def _not_found(self, request: Request, message: str) -> Response:
        return self._render(
            request,
            "error.html",
            404,
            status=404,
            title="Not found",
            message=message,
            parameter=None,
            view=None,
            page=None,
        )

    def _page(self, request: Request, page: str, regions: dict[str, Region], region: str | None) -> Response:
        """A page (full, or its content partial for htmx) or, with ``region`` and htmx, one region's partial."""
        try:
            view = parse_view(request)
        except ParamError as exc:
            return self._bad_request(request, exc)
        fragment = is_fragment(request)
        data = Data(self.analytics, view, self.cache, latency=page == "overview")
        context: dict[str, Any] = {"view": view, "page": page, "now": time.time()}
        if region is not None and fragment:
            context.update(regions[region](data))
            return self._render(request, f"partials/{page}_{region}.html", **context)
        context["has_calls"] = self.analytics.has_calls()
        context["facets"] = {"providers": [], "models": [], "routes": [], "users": []}
        if context["has_calls"]:
            context["facets"] = data.facets
            for build in regions.values():
                context.update(build(data))
        response = self._render(request, f"partials/{page}.html" if fragment else f"{page}.html", **context)
        if fragment:  # filter forms and links swap #content: the address bar gets the canonical URL of the view
            response.headers["HX-Push-Url"] = url_for(request, PAGE_PATHS[page], **view.query())
        return response

    # -- overview --

    @staticmethod
    def _overview_kpis(data: Data) -> dict[str, Any]:
        return {"kpis": _kpis(data.totals, data.previous), "totals": data.totals}

    @staticmethod
    def _overview_charts(data: Data) -> dict[str, Any]:
        return {"charts": _series_charts(data.report.series, data.view.step)}

    @staticmethod
    def _overview_top(data: Data) -> dict[str, Any]:
        view = data.view
        key = "cost_usd" if view.rank == "cost" else "requests"

        def top(rows: list[dict[str, Any]], name: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
            rows = sorted(rows, key=lambda r: (-(r[key] or 0), name(r)))[:8]
            return [{**r, "name": name(r)} for r in _with_share(rows, key)]

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

    def _overview_regions(self) -> dict[str, Region]:
        # charts first: the KPIs and top lists then reuse the series' report instead of querying again
        return {"charts": self._overview_charts, "kpis": self._overview_kpis, "top": self._overview_top}

    def overview(self, request: Request, region: str | None = None) -> Response:
        return self._page(request, "overview", self._overview_regions(), region)

    # -- requests --

    def _requests_table(self, data: Data) -> dict[str, Any]:
        view = data.view
        rows = self.analytics.page(
            view.filters, sort=view.sort, descending=view.descending, limit=view.limit, offset=view.offset
        )
        total = self.analytics.count(view.filters)
        return {
            "rows": rows,
            "total": total,
            "live": view.offset == 0 and view.sort == "time" and view.descending,
            "export_cap": EXPORT_CAP,
        }

    def requests(self, request: Request, region: str | None = None) -> Response:
        return self._page(request, "requests", {"table": self._requests_table}, region)

    def export(self, request: Request, fmt: str) -> Response:
        """``requests.csv`` / ``requests.json``: exactly the filtered rows (at most :data:`EXPORT_CAP`), streamed."""
        try:
            view = parse_view(request)
        except ParamError as exc:
            return self._bad_request(request, exc)
        rows = self.analytics.export(view.filters, sort=view.sort, descending=view.descending, cap=EXPORT_CAP)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        headers = {
            "Content-Disposition": f'attachment; filename="llm-requests-{stamp}.{fmt}"',
            "X-Export-Cap": str(EXPORT_CAP),
            "Cache-Control": "no-store",
        }
        if fmt == "csv":
            return StreamingResponse(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
        return StreamingResponse(_json(rows), media_type="application/json", headers=headers)

    def detail(self, request: Request) -> Response:
        try:
            call_pk = parse_id("id", request.path_params["id"])
        except ParamError as exc:
            return self._bad_request(request, exc)
        row = self.monitor.queries.request(call_pk)
        if row is None:
            return self._not_found(request, f"No request with id {call_pk}. It may have been deleted by retention.")
        try:
            view = parse_view(request)
        except ParamError as exc:
            return self._bad_request(request, exc)
        attempts = self.analytics.attempts(row["call_id"], row["started_at"])
        return self._render(
            request,
            "partials/detail.html" if is_fragment(request) else "detail.html",
            view=view,
            page="requests",
            row=row,
            attempts=attempts,
            timeline=charts.timeline(row["duration_ms"], row["ttft_ms"], row["ttlt_ms"]),
            started_iso=iso(row["started_at"]),
        )

    # -- costs --

    @staticmethod
    def _costs_body(data: Data) -> dict[str, Any]:
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
            "months": _months(series) if view.span > 31 * 86400 else [],
            "by_model": _with_share(sorted(data.report.by_model, key=lambda r: -r["cost_usd"]), "cost_usd"),
            "cost_dims": [
                ("Users", "user", _with_share(data.dim("user", "cost", 15), "cost_usd")),
                ("Routes", "route", _with_share(data.dim("route", "cost", 15), "cost_usd")),
                ("Tags", "tag", _with_share(data.dim("tag", "cost", 15), "cost_usd")),
            ],
        }

    def costs(self, request: Request, region: str | None = None) -> Response:
        return self._page(request, "costs", {"body": self._costs_body}, region)

    # -- errors --

    def _errors_body(self, data: Data) -> dict[str, Any]:
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
                    charts.time_chart(times, rate, step=view.step, label="Error rate", fmt=_pct_axis),
                    charts.legend(rate),
                ),
            ],
            "by_model": sorted(models, key=lambda r: (-r["errors"], r["provider"], r["model"])),
            "by_status": _with_share(statuses, "errors"),
            "by_type": _with_share(data.dim("error_type", "errors", 20, errors_only=True), "errors"),
            "latest": self.analytics.latest_errors(view.filters, 25),
        }

    def errors(self, request: Request, region: str | None = None) -> Response:
        return self._page(request, "errors", {"body": self._errors_body}, region)


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "started_at": iso(row["started_at"])}


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """``requests.csv``: the same cells as ``llm-monitor export`` (see :mod:`..store.cells`), 500 rows a chunk."""
    buffer = io.StringIO(newline="")
    writer = cells.csv_writer(buffer)
    writer.writerow(API_COLUMNS)
    for i, row in enumerate(rows, 1):
        writer.writerow(cells.csv_row(_export_row(row), API_COLUMNS))
        if i % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """``requests.json``: one array, never ``Infinity``/``NaN`` (see :mod:`..store.cells`), 500 rows a chunk."""
    yield "["
    chunk: list[str] = []
    for i, row in enumerate(rows):
        chunk.append(("," if i else "") + "\n" + cells.dumps(cells.json_row(_export_row(row))))
        if len(chunk) >= 500:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "\n]\n"


def routes(monitor: Monitor, env: Environment, gate: Gate) -> list[BaseRoute]:
    """The dashboard's routes, bound to ``monitor``'s data, rendering with ``env``, each run behind ``gate``."""
    pages = Pages(monitor, env)

    def region(handler: Callable[..., Response], name: str) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return handler(request, name)

        return endpoint

    def export(fmt: str) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return pages.export(request, fmt)

        return endpoint

    handlers: dict[str, Callable[[Request], Response]] = {
        "/": pages.overview,
        "/requests": pages.requests,
        "/requests.csv": export("csv"),
        "/requests.json": export("json"),
        "/requests/{id}": pages.detail,
        "/costs": pages.costs,
        "/errors": pages.errors,
        "/fragments/overview/kpis": region(pages.overview, "kpis"),
        "/fragments/overview/charts": region(pages.overview, "charts"),
        "/fragments/overview/top": region(pages.overview, "top"),
        "/fragments/requests/table": region(pages.requests, "table"),
        "/fragments/costs/body": region(pages.costs, "body"),
        "/fragments/errors/body": region(pages.errors, "body"),
    }
    return [
        Route(path, gate.endpoint(handler, "json" if path.endswith(".json") else "html"), methods=["GET"])
        for path, handler in handlers.items()
    ]
