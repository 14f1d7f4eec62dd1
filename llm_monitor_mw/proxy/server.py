"""The proxy's whole ASGI app: the dashboard under its prefix, everything else forwarded with attribution."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..hooks import Hooks
from ..middleware import AttributionMiddleware
from .app import USER_SCOPE_KEY, ForwardingApp
from .config import ProxyConfig


def _proxy_user(request: Request) -> str | None:
    return request.scope.get(USER_SCOPE_KEY)


class ProxyServer:
    """Pure ASGI app: requests under ``config.dashboard_prefix`` go to the dashboard (never upstream), the rest to
    the :class:`~.app.ForwardingApp` inside the attribution middleware (each call gets an inbound request id and
    trace, the user header's value as its user). Closes the upstream connections at lifespan shutdown."""

    def __init__(self, config: ProxyConfig, forwarding: ForwardingApp, dashboard: ASGIApp | None = None) -> None:
        self.config = config
        self.forwarding = forwarding
        self._forward = AttributionMiddleware(forwarding, user=_proxy_user)
        prefix = config.dashboard_prefix
        self._prefix = prefix if dashboard is not None else None
        self._dashboard = Router(routes=[Mount(prefix, app=dashboard)]) if dashboard is not None and prefix else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI event."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        prefix = self._prefix
        if prefix is not None and self._dashboard is not None:
            path: str = scope.get("path", "")
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                await self._dashboard(scope, receive, send)
                return
        await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.forwarding.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_proxy_app(
    config: ProxyConfig, transport: httpx.AsyncBaseTransport, hooks: Hooks, dashboard: ASGIApp | None = None
) -> ProxyServer:
    """The monitoring proxy as an ASGI app (serve it with uvicorn).

    ``transport`` is the monitor's capture transport (``monitor.async_transport(inner)``) and ``hooks`` the same
    monitor's hooks; ``dashboard`` the monitoring app (``monitor.asgi_app(auth)``), served under
    ``config.dashboard_prefix``, or ``None`` for none.
    """
    return ProxyServer(config, ForwardingApp(config, transport, hooks), dashboard)
