"""The WSGI face of the monitoring app, for Flask and other WSGI hosts.

``DispatcherMiddleware(flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=...)})``: the prefix arrives as
``SCRIPT_NAME`` and becomes the ASGI ``root_path``, so every URL the app builds carries it. The a2wsgi bridge runs
an event loop in a thread; it is built lazily, once per process (after a fork — gunicorn — it is rebuilt), and
there is no ASGI lifespan on this path, so the app initialises lazily too.

PEP 3333 servers (gunicorn, werkzeug) hand over the path as bytes decoded as latin-1 and the query string as
whatever bytes the client sent; the bridge decodes the path as UTF-8 and encodes the query as ASCII, and raises
(a 500 with a traceback in the server's log) when either fails. Such a request is answered ``400`` here, before
the bridge; a query string with raw non-ASCII bytes is percent-encoded (the same bytes once decoded).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote_from_bytes

from starlette.types import ASGIApp

from .app import SECURITY_HEADERS

StartResponse = Callable[..., Any]


class LazyWSGIApp:
    """A WSGI callable that builds ``a2wsgi.ASGIMiddleware(make_app())`` on first use in each process."""

    def __init__(self, make_app: Callable[[], ASGIApp]) -> None:
        self._make_app = make_app
        self._bridge: Any = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        pid = os.getpid()
        if self._bridge is None or self._pid != pid:
            with self._lock:
                if self._bridge is None or self._pid != pid:
                    from a2wsgi import ASGIMiddleware

                    self._bridge = ASGIMiddleware(self._make_app())  # type: ignore[arg-type]
                    self._pid = pid
        return self._bridge

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ = _checked(environ)
        if environ is None:
            start_response("400 Bad Request", BAD_PATH_HEADERS)
            return [BAD_PATH_BODY]
        return self._get()(environ, start_response)  # type: ignore[no-any-return]


BAD_PATH_BODY = b"Bad request: the path is not valid UTF-8.\n"
BAD_PATH_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(BAD_PATH_BODY))),
    ("Cache-Control", "no-store"),
    *((name.decode("latin-1"), value.decode("latin-1")) for name, value in SECURITY_HEADERS),
]


def _wsgi_text(value: object) -> str | None:
    """A PEP 3333 "bytes as latin-1" string decoded as UTF-8, or ``None`` when it is not."""
    if not isinstance(value, str):
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def _checked(environ: dict[str, Any]) -> dict[str, Any] | None:
    """``environ`` as the bridge can take it, or ``None`` when its path cannot be decoded (answer 400)."""
    for key in ("SCRIPT_NAME", "PATH_INFO"):
        if _wsgi_text(environ.get(key, "")) is None:
            return None
    query = environ.get("QUERY_STRING", "")
    if not isinstance(query, str):
        return None
    if not query.isascii():
        try:
            raw = query.encode("latin-1")
        except UnicodeError:
            return None
        environ = {**environ, "QUERY_STRING": quote_from_bytes(raw, safe="/?&=%+:;,@!$'()*[]~")}
    return environ
