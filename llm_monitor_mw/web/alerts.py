"""The Alerts page: firing alerts (with Acknowledge), budgets against their limits, rules, and the event history.

``GET alerts`` is a full page (its content partial for htmx), ``GET fragments/alerts/body`` its auto-refreshed
region, ``POST alerts/{id}/acknowledge`` acknowledges one alert: for htmx it answers with the refreshed region,
otherwise it redirects (303) back to the page. POSTs pass the app's CSRF check (same-origin only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import _parse_basic
from .gate import Gate
from .pages import is_fragment, render_page
from .params import ParamError, parse_id
from .urls import url_for

if TYPE_CHECKING:
    from ..alerts import AlertManager

HISTORY_LIMIT = 100


class AlertsPage:
    """The handlers, bound to one alert manager (``manager()`` gives it: it is built on first use)."""

    def __init__(self, manager: Callable[[], AlertManager], env: Environment) -> None:
        self.manager = manager
        self.env = env

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return render_page(self.env, request, template, status_code, **context)

    def _context(self) -> dict[str, Any]:
        manager = self.manager()
        states = {row.key: row for row in manager.store.states()}
        rules = [
            {"rule": rule, "state": states[rule.key].state if rule.key in states else "ok"} for rule in manager.rules
        ]
        history = manager.history(HISTORY_LIMIT)
        active = manager.active()
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
        }

    def page(self, request: Request) -> Response:
        fragment = is_fragment(request)
        return self._render(request, "partials/alerts.html" if fragment else "alerts.html", **self._context())

    def body(self, request: Request) -> Response:
        if not is_fragment(request):
            return self.page(request)
        return self._render(request, "partials/alerts_body.html", **self._context())

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
        Route("/alerts/{id}/acknowledge", gate.endpoint(page.acknowledge), methods=["POST"]),
    ]
