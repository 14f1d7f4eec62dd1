"""Attribution middleware: ties each outbound LLM call to the inbound web request that caused it.

Both middlewares set :data:`~llm_monitor_mw.context.current_inbound` for the duration of a request; the transport
reads it at every captured call and stores the request's route template, user, method and request id on the
record. Nothing is looked up at request start: the route and the user are resolved at the first LLM call of the
request (when the host's router and auth, usually inside this middleware, have run) and cached for the rest.

Never breaks the host: a failure inside attribution is logged on the ``llm_monitor_mw`` logger and the request
goes on unattributed; the host app's own exceptions propagate unchanged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextvars import Token
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .context import InboundRequest, asgi_route, current_inbound, flask_route

__all__ = ["AttributionMiddleware", "WSGIAttributionMiddleware", "new_request_id"]

logger = logging.getLogger("llm_monitor_mw")

MAX_REQUEST_ID = 128
"""Longer request-id header values are cut to this many characters."""

AsgiUser = Callable[[Request], str | None]
WsgiUser = Callable[[dict[str, Any]], str | None]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def new_request_id() -> str:
    """A fresh short request id (16 hex digits)."""
    return uuid.uuid4().hex[:16]


def _request_id(value: str | None) -> str:
    value = (value or "").strip()
    return value[:MAX_REQUEST_ID] if value else new_request_id()


def _reset(token: Token[InboundRequest | None]) -> None:
    try:
        current_inbound.reset(token)
    except Exception as exc:  # a token from another context (a server that closes on another thread)
        logger.warning("llm_monitor_mw: could not reset the request attribution: %r", exc)


class AttributionMiddleware:
    """Pure ASGI middleware (Starlette, FastAPI, any ASGI app) attributing LLM calls to HTTP requests.

    ``app.add_middleware(AttributionMiddleware, user=lambda request: request.state.user_id)`` — or
    ``app.add_middleware(monitor.asgi_middleware, ...)``. Add it last so that it is the outermost middleware:
    the route and the user are read lazily, after the router and auth middleware inside it have run.

    Args:
        app: the ASGI app to wrap.
        user: ``user(request: starlette.requests.Request) -> str | None``, called (synchronously) at most once per
            request, at its first LLM call; ``request.user``/``request.state`` are as the host's middleware left
            them. Calls inside ``monitor.tags(user=...)`` skip it: explicit wins.
        request_id_header: the inbound header whose value becomes ``inbound_request_id`` (else a fresh id).
    """

    def __init__(self, app: ASGIApp, *, user: AsgiUser | None = None, request_id_header: str = "x-request-id") -> None:
        self.app = app
        self.user = user
        self.request_id_header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI event; http requests run with their :class:`InboundRequest` set."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = self._enter(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            if token is not None:
                _reset(token)

    def _enter(self, scope: Scope) -> Token[InboundRequest | None] | None:
        try:
            return current_inbound.set(self.inbound(scope))
        except Exception as exc:
            logger.warning("llm_monitor_mw: request attribution skipped after an internal error: %r", exc)
            return None

    def inbound(self, scope: Scope) -> InboundRequest:
        """The :class:`InboundRequest` for an http ``scope`` (resolvers bound, nothing resolved yet)."""
        header = None
        for name, value in scope.get("headers") or ():
            if name == self.request_id_header:
                header = value.decode("latin-1")
                break
        base_root_path = scope.get("root_path") or ""
        user = self.user
        return InboundRequest(
            scope.get("method") or "GET",
            _request_id(header),
            route=lambda: asgi_route(scope, base_root_path),
            user=None if user is None else lambda: user(Request(scope)),
        )


class WSGIAttributionMiddleware:
    """Native WSGI middleware (Flask, Django, any WSGI app) attributing LLM calls to HTTP requests.

    ``app.wsgi_app = WSGIAttributionMiddleware(app.wsgi_app, user=...)`` — or ``monitor.wsgi_middleware(...)``.
    The attribution lasts until the response iterable is closed, so LLM calls made while a streamed body is
    generated are attributed too. The route is Flask's matched rule (``request.url_rule.rule``), read at the first
    LLM call while Flask's request context is active; other WSGI frameworks get no route.

    Args:
        app: the WSGI app to wrap.
        user: ``user(environ) -> str | None``, called at most once per request, at its first LLM call.
        request_id_header: the inbound header whose value becomes ``inbound_request_id`` (else a fresh id).
    """

    def __init__(self, app: WSGIApp, *, user: WsgiUser | None = None, request_id_header: str = "X-Request-ID") -> None:
        self.app = app
        self.user = user
        self.request_id_key = "HTTP_" + request_id_header.upper().replace("-", "_")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve one request; its :class:`InboundRequest` stays set until the response is closed."""
        token = self._enter(environ)
        if token is None:
            return self.app(environ, start_response)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            _reset(token)
            raise
        return _ClosingResponse(result, token)

    def _enter(self, environ: dict[str, Any]) -> Token[InboundRequest | None] | None:
        try:
            return current_inbound.set(self.inbound(environ))
        except Exception as exc:
            logger.warning("llm_monitor_mw: request attribution skipped after an internal error: %r", exc)
            return None

    def inbound(self, environ: dict[str, Any]) -> InboundRequest:
        """The :class:`InboundRequest` for a WSGI ``environ`` (resolvers bound, nothing resolved yet)."""
        base_script_name = environ.get("SCRIPT_NAME") or ""
        user = self.user
        return InboundRequest(
            environ.get("REQUEST_METHOD") or "GET",
            _request_id(environ.get(self.request_id_key)),
            route=lambda: flask_route(environ, base_script_name),
            user=None if user is None else lambda: user(environ),
        )


class _ClosingResponse:
    """The app's response iterable, unchanged, that ends the request's attribution once it is closed."""

    __slots__ = ("_result", "_token")

    def __init__(self, result: Iterable[bytes], token: Token[InboundRequest | None]) -> None:
        self._result = result
        self._token: Token[InboundRequest | None] | None = token

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        """Close the app's iterable (its exceptions propagate), then reset the attribution (once)."""
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            token, self._token = self._token, None
            if token is not None:
                _reset(token)
