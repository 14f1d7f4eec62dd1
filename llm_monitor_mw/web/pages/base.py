"""What every dashboard page shares: the store's answers for one request (:class:`Data`), a short-lived cache,
rendering, and the page/region plumbing (:class:`Dashboard`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import Response

from ..keys import KeyNames
from ..params import ParamError
from ..templating import render
from ..urls import url_for
from .view import View, parse_view

if TYPE_CHECKING:
    from ...store import Store
    from ...store.alerts import AlertStore
    from ...store.read import Analytics, Report

logger = logging.getLogger("llm_monitor_mw")

REFRESH_TRIGGER = "every 10s, refresh-now"
"""``hx-trigger`` of auto-refreshed regions (``static/app.js`` pauses them and fires ``refresh-now`` on resume)."""
PAGE_PATHS = {"overview": "", "requests": "requests", "traces": "traces", "costs": "costs", "errors": "errors"}


def firing_alerts(alerts: AlertStore) -> dict[str, int] | None:
    """What the top bar's Alerts badge shows: ``{"count": …, "unacknowledged": …}`` of the alerts firing and the
    budgets in warning or exceeded (every process's, from ``alert_state``); ``None`` when the state cannot be read
    (the badge is a hint: a database error must not fail the page it sits on)."""
    from ...store.alerts import ACTIVE_STATES

    try:
        rows = [row for row in alerts.states() if row.state in ACTIVE_STATES]
    except alerts.engine.errors as exc:
        logger.debug("llm_monitor_mw: the alerts badge could not read the alert state: %r", exc)
        return None
    return {"count": len(rows), "unacknowledged": sum(1 for row in rows if row.acked_at is None)}


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

    @cached_property
    def unpriced(self) -> list[dict[str, Any]]:
        """Calls with tokens but no price in the range, by model (``provider``, ``model``, ``calls``), most first."""
        return self.analytics.unpriced(self.view.filters)

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


Handler = Callable[[Request], Response]


class Dashboard:
    """The handlers' shared parts: the store's reads (one :class:`Analytics`, the API's too), the app's Jinja
    environment and a :class:`TTLCache`."""

    def __init__(self, store: Store, env: Environment, key_names: KeyNames | None = None) -> None:
        self.store = store
        self.key_names = key_names if key_names is not None else KeyNames()
        """How API keys are labelled (``Monitor(key_names=...)``)."""
        self.analytics = store.analytics
        self.queries = store.queries
        self.env = env
        self.cache = TTLCache()

    def firing(self) -> dict[str, int] | None:
        """The Alerts badge's counts (see :func:`firing_alerts`); templates call it only where the badge shows."""
        return firing_alerts(self.store.alerts)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return render_page(self.env, request, template, status_code, firing=self.firing, **context)

    def bad_request(self, request: Request, exc: ParamError) -> Response:
        return self.render(
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

    def not_found(self, request: Request, message: str) -> Response:
        return self.render(
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

    def page(self, request: Request, page: str, regions: dict[str, Region], region: str | None) -> Response:
        """A page (full, or its content partial for htmx) or, with ``region`` and htmx, one region's partial."""
        try:
            view = parse_view(request)
        except ParamError as exc:
            return self.bad_request(request, exc)
        fragment = is_fragment(request)
        data = Data(self.analytics, view, self.cache, latency=page == "overview")
        context: dict[str, Any] = {"view": view, "page": page, "now": time.time()}
        if region is not None and fragment:
            context.update(regions[region](data))
            return self.render(request, f"partials/{page}_{region}.html", **context)
        context["has_calls"] = self.analytics.has_calls()
        context["facets"] = {"providers": [], "models": [], "routes": [], "users": []}
        if context["has_calls"]:
            context["facets"] = data.facets
            for build in regions.values():
                context.update(build(data))
        response = self.render(request, f"partials/{page}.html" if fragment else f"{page}.html", **context)
        if fragment:  # filter forms and links swap #content: the address bar gets the canonical URL of the view
            response.headers["HX-Push-Url"] = url_for(request, PAGE_PATHS[page], **view.query())
        return response

    def handlers(self, page: str, path: str, regions: dict[str, Region]) -> dict[str, Handler]:
        """``path`` (the page) and ``fragments/<page>/<region>`` for each region, as route path -> handler."""

        def whole(request: Request) -> Response:
            return self.page(request, page, regions, None)

        def one(name: str) -> Handler:
            def endpoint(request: Request) -> Response:
                return self.page(request, page, regions, name)

            return endpoint

        return {path: whole, **{f"/fragments/{page}/{name}": one(name) for name in regions}}
