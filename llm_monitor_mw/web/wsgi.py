"""The WSGI face of the monitoring app, for Flask and other WSGI hosts.

``DispatcherMiddleware(flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=...)})``: the prefix arrives as
``SCRIPT_NAME`` and becomes the ASGI ``root_path``, so every URL the app builds carries it. The a2wsgi bridge runs
an event loop in a thread; it is built lazily, once per process (after a fork — gunicorn — it is rebuilt), and
there is no ASGI lifespan on this path, so the app initialises lazily too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp

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
        return self._get()(environ, start_response)  # type: ignore[no-any-return]
