"""Who may see the monitoring app: ``BasicAuth``, ``Constraint``, and the ASGI middleware that enforces them.

The middleware wraps the *whole* sub-app — pages, partials, API, static files — and has no path-based
exemptions, so no spelling of a path (``..``, ``%2e%2e``, ``//``, case, trailing dots) can route around it.
It denies by default: a verifier or predicate that raises means "no".
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("llm_monitor_mw")

Verifier = Callable[[str, str], "bool | Awaitable[bool]"]
Predicate = Callable[[Request], "bool | Awaitable[bool]"]


class Auth(Protocol):
    """Anything that can decide on a request: returns ``None`` to allow, or the response that denies."""

    async def check(self, request: Request) -> Response | None: ...


async def _call(fn: Callable[..., object], *args: object) -> object:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _wants_json(request: Request) -> bool:
    return "/api/" in request.url.path or "application/json" in request.headers.get("accept", "")


class BasicAuth:
    """HTTP Basic authentication: a fixed ``username``/``password`` (compared in constant time), or ``verify``.

    ``verify(username, password) -> bool`` may be sync or async (e.g. a lookup in your user table).
    """

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        verify: Verifier | None = None,
        realm: str = "LLM monitor",
    ) -> None:
        if verify is None and (not username or not password):
            raise ValueError("BasicAuth needs a username and a non-empty password, or verify=callable")
        if verify is not None and (username or password):
            raise ValueError("BasicAuth takes either username/password or verify=, not both")
        self._username = username.encode() if username else b""
        self._password = password.encode() if password else b""
        self._verify = verify
        self.realm = realm.replace('"', "")

    def __repr__(self) -> str:  # never show the password
        return "BasicAuth(verify=...)" if self._verify else f"BasicAuth({self._username.decode()!r}, '***')"

    async def check(self, request: Request) -> Response | None:
        credentials = _parse_basic(request.headers.get("authorization"))
        if credentials is not None and await self._accepts(*credentials):
            return None
        headers = {"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'}
        if _wants_json(request):
            return JSONResponse({"error": "authentication required"}, status_code=401, headers=headers)
        return PlainTextResponse("Authentication required.", status_code=401, headers=headers)

    async def _accepts(self, username: str, password: str) -> bool:
        if self._verify is not None:
            try:
                return bool(await _call(self._verify, username, password))
            except Exception:
                logger.exception("llm_monitor_mw: BasicAuth verify raised; denying")
                return False
        # Compare both, always, so timing says nothing about which part was wrong.
        user_ok = hmac.compare_digest(username.encode(), self._username)
        password_ok = hmac.compare_digest(password.encode(), self._password)
        return user_ok and password_ok


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


class Constraint:
    """Allow a request when ``predicate(request)`` (sync or async) is truthy.

    On deny: redirect to ``redirect_to`` when given (a URL, or ``callable(request) -> URL`` — e.g. your login
    page with a ``next=`` parameter), else answer ``status_code`` (403 by default; use 401 for "log in first").
    A predicate that raises denies. The request is the monitoring app's request: ``request.scope`` carries
    whatever your middleware put there (``session``, ``user``, ``state``).
    """

    def __init__(
        self,
        predicate: Predicate,
        *,
        redirect_to: str | Callable[[Request], str] | None = None,
        status_code: int = 403,
    ) -> None:
        if not callable(predicate):
            raise TypeError("Constraint needs a callable predicate(request) -> bool")
        if status_code not in (401, 403, 404):
            raise ValueError("status_code must be 401, 403 or 404")
        self._predicate = predicate
        self._redirect_to = redirect_to
        self._status_code = status_code

    async def check(self, request: Request) -> Response | None:
        try:
            allowed = bool(await _call(self._predicate, request))
        except Exception:
            logger.exception("llm_monitor_mw: Constraint predicate raised; denying")
            allowed = False
        if allowed:
            return None
        if self._redirect_to is not None:
            try:
                target = self._redirect_to(request) if callable(self._redirect_to) else self._redirect_to
            except Exception:
                logger.exception("llm_monitor_mw: Constraint redirect_to raised; denying without redirect")
            else:
                return RedirectResponse(target, status_code=303)
        if _wants_json(request):
            return JSONResponse({"error": "forbidden"}, status_code=self._status_code)
        return PlainTextResponse("Forbidden.", status_code=self._status_code)


class AuthMiddleware:
    """Runs ``auth.check`` before every HTTP request (and refuses websockets it cannot check) of the wrapped app."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope, receive)
        try:
            denial = await self.auth.check(request)
        except Exception:
            logger.exception("llm_monitor_mw: auth check raised; denying")
            denial = PlainTextResponse("Forbidden.", status_code=403)
        if denial is not None:
            await denial(scope, receive, send)
            return
        await self.app(scope, receive, send)
