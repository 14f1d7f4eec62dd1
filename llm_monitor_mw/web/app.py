"""The Starlette app factory: routes, templates, static files, security headers and JSON errors."""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import alerts as alerts_page
from . import api, pages
from .auth import Auth, AuthMiddleware
from .bearer import BearerTokenGate
from .cardinality import DEFAULT_MAX_LABEL_VALUES
from .csrf import CSRFMiddleware
from .gate import Gate
from .health import health_endpoint
from .keys import KeyNames
from .metrics import metrics_endpoint
from .resources import resource_dir
from .responses import JSONAnswer
from .templating import create_environment

if TYPE_CHECKING:
    from ..alerts import AlertManager
    from ..hooks import Hooks
    from ..store import Store

logger = logging.getLogger("llm_monitor_mw")

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        b" object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


OPS_CONCURRENCY = 2
"""Slots for ``/metrics`` and ``/health`` (scrapes and probes are few; each one's SQL is short)."""
OPS_QUEUE_TIMEOUT = 5.0
"""How long a scrape or probe waits for a slot (within Prometheus's default 10 s scrape timeout)."""

_warned_open = False


def _warn_open_once() -> None:
    global _warned_open
    if not _warned_open:
        _warned_open = True
        logger.warning(
            "llm_monitor_mw: the monitoring app has no auth configured: anyone who can reach it can read your LLM"
            " usage. Pass auth=BasicAuth(...) or auth=Constraint(...) to asgi_app()/wsgi_app()."
        )


def lazy_alert_manager(store: Store, hooks: Hooks | None) -> Callable[[], AlertManager]:
    """An :class:`~llm_monitor_mw.alerts.AlertManager` over ``store``, built at the first call (an app served
    without a monitor: the Alerts page shows the stored state and history, with no rules or budgets of its own)."""
    lock = threading.Lock()
    built: list[AlertManager] = []

    def manager() -> AlertManager:
        with lock:
            if not built:
                from ..alerts import AlertManager
                from ..hooks import Hooks

                built.append(AlertManager(store, hooks if hooks is not None else Hooks()))
            return built[0]

    return manager


def create_app(
    store: Store,
    hooks: Hooks | None = None,
    auth: Auth | None = None,
    *,
    alerts: Callable[[], AlertManager] | None = None,
    metrics_max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
    key_names: Mapping[str, str] | None = None,
    metrics_token: str | None = None,
    health_checks: Sequence[str] = (),
    concurrency: int | None = None,
    queue_timeout: float = 1.0,
) -> ASGIApp:
    """The app that ``Monitor.asgi_app()`` returns: routes inside CSRF, auth and security-header layers.

    Every page, the API, ``/metrics`` and ``/health`` read through ``store`` (pages and API share its one
    ``Analytics``). ``alerts`` returns the alert manager the Alerts page shows (default: one built over ``store``
    and ``hooks`` on first use); ``metrics_max_label_values`` bounds each ``/metrics`` label; ``key_names`` names
    API keys by fingerprint prefix on the pages and in the API (see :class:`~.keys.KeyNames`).

    Security headers are outermost so that even a 401 carries them; auth wraps everything, static files too.
    ``metrics_token`` lets ``Authorization: Bearer <token>`` reach ``/metrics`` and ``/health`` (only those
    handlers) without ``auth``; ``health_checks`` are provider URLs ``/health`` checks for reachability.

    Dashboard, API and alerts handlers run behind one :class:`~.gate.Gate` of ``concurrency`` slots (default: the
    CPUs, at least 2) in threads of their own; a request that waits ``queue_timeout`` seconds for a slot gets 503
    with ``Retry-After``. ``/metrics`` and ``/health`` have a small gate of their own (:data:`OPS_CONCURRENCY`
    slots, :data:`OPS_QUEUE_TIMEOUT`): a busy dashboard must not fail a load balancer's health check or a scrape.
    """
    env = create_environment()
    gate = Gate(concurrency, queue_timeout=queue_timeout, name="dashboard")
    ops = Gate(OPS_CONCURRENCY, queue_timeout=OPS_QUEUE_TIMEOUT, name="ops")
    metrics = ops.endpoint(metrics_endpoint(store, metrics_max_label_values), "json")
    health = ops.endpoint(health_endpoint(store, health_checks), "json")
    manager = alerts if alerts is not None else lazy_alert_manager(store, hooks)
    names = KeyNames(key_names)

    async def http_error(request: Request, exc: Any) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "internal error")
        return JSONAnswer({"error": detail}, status_code=status)

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        # the database is down, locked or too slow: say so (503, retry later), never a 500 with a traceback
        logger.warning("llm_monitor_mw: dashboard request %s failed on the database: %r", request.url.path, exc)
        message = f"the monitoring database is unavailable ({type(exc).__name__}); try again shortly"
        headers = {"Retry-After": "5", "Cache-Control": "no-store"}
        if "/api/" in request.url.path or "application/json" in request.headers.get("accept", ""):
            return JSONAnswer({"error": message}, status_code=503, headers=headers)
        body = f"<!doctype html><title>503: database unavailable</title><h1>503</h1><p>{html.escape(message)}</p>"
        return HTMLResponse(body, status_code=503, headers=headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return JSONAnswer({"error": "internal error in llm-monitor-mw; see the server log"}, status_code=500)

    app = Starlette(
        routes=[
            *pages.routes(store, env, gate, names),
            *alerts_page.routes(manager, env, gate),
            *api.routes(store, gate, names),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=str(resource_dir("static"))), name="static"),
        ],
        exception_handlers={
            HTTPException: http_error,
            **dict.fromkeys(store.engine.errors, database_unavailable),
            500: server_error,
        },
    )
    wrapped: ASGIApp = CSRFMiddleware(app)
    if auth is None:
        _warn_open_once()
    else:
        wrapped = AuthMiddleware(wrapped, auth)
    if metrics_token is not None:
        granted: dict[str, ASGIApp] = {"/metrics": metrics, "/health": health}
        wrapped = BearerTokenGate(wrapped, metrics_token, granted)
    return SecurityHeaders(wrapped)
