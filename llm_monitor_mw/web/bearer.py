"""A bearer token for scrapers and load balancers: ``Authorization: Bearer <token>`` opens ``/metrics``/``/health``.

The token grants *endpoints*, not paths: a request with a valid token whose route path is exactly one of the
granted ones is handed straight to that endpoint's handler, never to the app's router, so no spelling of a path
(``..``, ``%2e``, ``//``, a trailing slash) can make the token reach anything else. Every other request — a wrong
or missing token, another path, another method — goes on to the app's normal auth.
"""

from __future__ import annotations

import hmac
import string
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)


def validate_token(token: str) -> str:
    """``token`` if it can travel in an ``Authorization`` header: non-empty printable ASCII without spaces."""
    if not isinstance(token, str) or not token or not set(token) <= _TOKEN_CHARS:
        raise ValueError("metrics_token must be a non-empty string of printable ASCII characters without spaces")
    return token


def route_path(scope: Scope) -> str:
    """The path the app's router matches: ``path`` without the mount's ``root_path`` (as Starlette computes it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the request's first ``Authorization: Bearer ...`` header, if that is its first one."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return None
            return token.strip() or None
    return None


class BearerTokenGate:
    """ASGI middleware: a valid bearer token on ``GET``/``HEAD`` of a granted route path reaches its endpoint."""

    def __init__(self, app: ASGIApp, token: str, endpoints: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self._token = validate_token(token).encode()
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            endpoint = self.endpoints.get(route_path(scope))
            if endpoint is not None:
                given = bearer_token(scope)
                if given is not None and hmac.compare_digest(given, self._token):
                    await endpoint(scope, receive, send)
                    return
        await self.app(scope, receive, send)
