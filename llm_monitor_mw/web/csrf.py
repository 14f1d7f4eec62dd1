"""Cross-site request forgery protection for state-changing requests, by Fetch metadata and Origin.

Browsers send Basic credentials and cookies to the app automatically, so neither is a CSRF defence. Like
Go's ``CrossOriginProtection`` and Datasette: a non-safe method is refused when ``Sec-Fetch-Site`` says the
request came from another site, or (for browsers without Fetch metadata) when ``Origin`` names another host.
Requests with neither header are not from a browser form or script and pass.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_cross_origin(method: str, headers: Headers) -> bool:
    """Whether a request with this method and these headers must be refused."""
    if method in SAFE_METHODS:
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    host = headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") != host


class CSRFMiddleware:
    """Answers 403 to cross-origin non-safe requests; everything else passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_cross_origin(scope["method"], Headers(scope=scope)):
            response = JSONResponse({"error": "cross-origin request refused"}, status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
