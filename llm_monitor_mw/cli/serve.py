"""``llm-monitor serve``: the dashboard on an existing SQLite file, standalone, through uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from ..monitor import Monitor
from ..store.dbfile import open_existing
from ..web.auth import BasicAuth
from .errors import UsageError

PASSWORD_ENV = "LLM_MONITOR_PASSWORD"  # noqa: S105 - the variable's name, not a password
USERNAME_ENV = "LLM_MONITOR_USERNAME"
DEFAULT_USERNAME = "admin"

OPEN_WARNING = """\
WARNING: llm-monitor is serving the dashboard WITHOUT AUTHENTICATION on {host}:{port}.
WARNING: anyone who can reach this address sees every recorded call: models, costs, users, routes, errors.
WARNING: set a password (--username U and the {env} environment variable), or bind to 127.0.0.1."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(args: argparse.Namespace) -> BasicAuth | None:
    """Basic auth from ``--username``/``--password`` or the environment, ``None`` for an open dashboard."""
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    username = args.username or os.environ.get(USERNAME_ENV)
    if password is None or password == "":
        if args.username:
            raise UsageError(f"--username needs a password: set {PASSWORD_ENV} (or pass --password)")
        return None
    return BasicAuth(username or DEFAULT_USERNAME, password)


def normalize_prefix(prefix: str) -> str:
    """``monitoring/`` -> ``/monitoring``; ``/`` -> ``""`` (served at the root)."""
    stripped = prefix.strip().strip("/")
    if not stripped:
        return ""
    if any(part in ("", ".", "..") for part in stripped.split("/")):
        raise UsageError(f"--prefix {prefix!r} is not a clean path like /monitoring")
    return "/" + stripped


def build_app(monitor: Monitor, auth: BasicAuth | None, prefix: str) -> Any:
    """The monitoring app, at the root or mounted at ``prefix`` (``/`` then redirects there)."""
    app = monitor.asgi_app(auth=auth)
    if not prefix:
        return app

    async def to_prefix(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{prefix}/", status_code=307)

    return Starlette(routes=[Route("/", to_prefix), Mount(prefix, app=app)])


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    open_existing(args.db).close()  # refuse a missing, foreign or newer file before anything creates it
    auth = credentials(args)
    prefix = normalize_prefix(args.prefix)
    if auth is None and not is_loopback(args.host):
        print(OPEN_WARNING.format(host=args.host, port=args.port, env=PASSWORD_ENV), file=sys.stderr, flush=True)
    retention_days = args.retention / 86400 if args.retention else None
    with Monitor(args.db, retention_days=retention_days) as monitor:
        app = build_app(monitor, auth, prefix)
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(
            f"llm-monitor: serving {args.db} at http://{shown}:{args.port}{prefix}/"
            f" ({'basic auth' if auth else 'no auth'}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit normally (closing the monitor) instead
        # of dying by the signal.
        previous = signal.signal(signal.SIGTERM, _exit_normally)
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)
