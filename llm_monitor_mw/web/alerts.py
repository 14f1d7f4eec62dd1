"""The Alerts page: firing alerts (with Acknowledge), budgets against their limits, rules, and the event history.

``GET alerts`` is a full page (its content partial for htmx), ``GET fragments/alerts/body`` its auto-refreshed
region, ``GET fragments/alerts/badge`` the top bar's link with its count of what fires (every page shows it),
``POST alerts/{id}/acknowledge`` acknowledges one alert: for htmx it answers with the refreshed region,
otherwise it redirects (303) back to the page. POSTs pass the app's CSRF check (same-origin only).

Values and thresholds are shown in their metric's unit (:func:`metric_value`): ``7.3%``, ``$1.20``, ``840 ms``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import format as fm
from .auth import _parse_basic
from .gate import Gate
from .pages import is_fragment, render_page
from .pages.base import firing_alerts
from .params import ParamError, parse_id
from .urls import url_for

if TYPE_CHECKING:
    from ..alerts import AlertManager

HISTORY_LIMIT = 100
BADGE_TRIGGER = "every 30s, refresh-now"


def metric_value(metric: str | None, value: float | None) -> str:
    """An alert's value or threshold in its metric's unit: ``error_rate`` 0.0729 → ``7.29%``, ``cost_usd`` → money,
    ``*_ms`` → a duration, counts as integers; an unknown metric as 4 significant figures."""
    if value is None:
        return "—"
    if metric == "error_rate":
        return fm.percent(value)
    if metric == "cost_usd":
        return fm.money(value)
    if metric is not None and metric.endswith("_ms"):
        return fm.duration_ms(value)
    if metric in ("requests", "rate_limited"):
        return fm.integer(value)
    return f"{value:.4g}"


def state_metric(row: Any, rules: dict[str, Any]) -> str | None:
    """The metric of an ``alert_state`` row: its rule's (configured in this process, else the first word of its
    summary, which a rule's :meth:`~llm_monitor_mw.alerts.Rule.describe` starts with), ``cost_usd`` for budgets."""
    if row.source == "budget":
        return "cost_usd"
    rule = rules.get(row.key)
    if rule is not None:
        return str(rule.metric)
    first = (row.summary or "").split(" ", 1)[0]
    return first or None


class AlertsPage:
    """The handlers, bound to one alert manager (``manager()`` gives it: it is built on first use)."""

    def __init__(self, manager: Callable[[], AlertManager], env: Environment) -> None:
        self.manager = manager
        self.env = env

    def firing(self) -> dict[str, int] | None:
        """The Alerts badge's counts (``None`` when the alert state cannot be read)."""
        return firing_alerts(self.manager().store)

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return render_page(self.env, request, template, status_code, firing=self.firing, **context)

    def _context(self) -> dict[str, Any]:
        manager = self.manager()
        states = {row.key: row for row in manager.store.states()}
        rules = [
            {"rule": rule, "state": states[rule.key].state if rule.key in states else "ok"} for rule in manager.rules
        ]
        by_key = {rule.key: rule for rule in manager.rules}
        history = manager.history(HISTORY_LIMIT)
        active = [{"row": row, "metric": state_metric(row, by_key)} for row in manager.active()]
        budgets = manager.budget_status()
        return {
            "view": None,
            "page": "alerts",
            "now": time.time(),
            "active": active,
            "budgets": budgets,
            "rules": rules,
            "history": history,
            "channels": manager.dispatcher.stats(),
            "configured": bool(rules or budgets or history or active),
            "metric_value": metric_value,
        }

    def page(self, request: Request) -> Response:
        fragment = is_fragment(request)
        return self._render(request, "partials/alerts.html" if fragment else "alerts.html", **self._context())

    def body(self, request: Request) -> Response:
        if not is_fragment(request):
            return self.page(request)
        return self._render(request, "partials/alerts_body.html", **self._context())

    def badge(self, request: Request) -> Response:
        """The top bar's link to this page with its firing count (a page when loaded directly)."""
        if not is_fragment(request):
            return self.page(request)
        here = urlsplit(request.headers.get("hx-current-url", "")).path == url_for(request, "alerts")
        return self._render(request, "partials/alerts_link.html", page="alerts" if here else None)

    def acknowledge(self, request: Request) -> Response:
        try:
            alert_id = parse_id("id", request.path_params["id"])
        except ParamError:
            return self._render(
                request,
                "error.html",
                400,
                status=400,
                title="Bad request",
                message="not an alert id",
                parameter="id",
                view=None,
                page="alerts",
            )
        credentials = _parse_basic(request.headers.get("authorization"))
        self.manager().acknowledge(alert_id, by=credentials[0] if credentials else None)
        if is_fragment(request):
            return self._render(request, "partials/alerts_body.html", **self._context())
        return RedirectResponse(url_for(request, "alerts"), status_code=303)


def routes(manager: Callable[[], AlertManager], env: Environment, gate: Gate) -> list[BaseRoute]:
    """The Alerts page's routes for the alert manager ``manager()`` returns, each run behind ``gate``."""
    page = AlertsPage(manager, env)
    return [
        Route("/alerts", gate.endpoint(page.page), methods=["GET"]),
        Route("/fragments/alerts/body", gate.endpoint(page.body), methods=["GET"]),
        Route("/fragments/alerts/badge", gate.endpoint(page.badge), methods=["GET"]),
        Route("/alerts/{id}/acknowledge", gate.endpoint(page.acknowledge), methods=["POST"]),
    ]
