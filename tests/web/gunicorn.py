"""Calling a WSGI app with the environ gunicorn would build (PEP 3333: raw bytes decoded as latin-1)."""

from __future__ import annotations

import io
import sys
from typing import Any


def environ(path_info: str, query: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What gunicorn hands a WSGI app: PATH_INFO and QUERY_STRING as the raw bytes decoded as latin-1."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/monitoring",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def call_wsgi(app: Any, env: dict[str, Any]) -> tuple[int, bytes]:
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(line)

    body = b"".join(app(env, start_response))
    return int(status[0].split()[0]), body
