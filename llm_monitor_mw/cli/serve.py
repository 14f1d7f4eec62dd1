"""``llm-monitor serve``: the dashboard on an existing SQLite file or a PostgreSQL database, standalone, through
uvicorn. It records nothing: it serves a :class:`~llm_monitor_mw.store.Store` (and runs its retention)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import signal
import socket
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from ..hooks import Hooks
from ..store import Store, open_engine
from ..store.dbfile import open_existing
from ..store.engine import is_postgres_url
from ..web.app import create_app
from ..web.auth import BasicAuth
from .errors import CommandFailed, UsageError

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


def build_app(store: Store, hooks: Hooks, auth: BasicAuth | None, prefix: str) -> Any:
    """The monitoring app, at the root or mounted at ``prefix`` (``/`` then redirects there)."""
    app = create_app(store, hooks, auth)
    if not prefix:
        return app

    async def to_prefix(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{prefix}/", status_code=307)

    return Starlette(routes=[Route("/", to_prefix), Mount(prefix, app=app)])


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one); :class:`CommandFailed` says why not."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET  # as uvicorn decides
    where = f"[{bare}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    try:
        sock = socket.create_server((bare, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} is already in use (stop what listens there, or choose another with --port)"
        elif exc.errno == errno.EACCES:
            why = f"permission denied for port {port} (ports below 1024 need privileges; try --port 8000)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{bare} is not an address of this machine"
        else:
            why = exc.strerror or str(exc)
        raise CommandFailed(f"cannot listen on {where}: {why}") from None
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and create_server's is 0: without it a
    # keep-alive client waits a delayed ACK (~40 ms) for each response's second write. Accepted sockets inherit it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    if not is_postgres_url(args.db):
        open_existing(args.db).close()  # refuse a missing, foreign or newer file before anything creates it
    auth = credentials(args)
    prefix = normalize_prefix(args.prefix)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not between 0 and 65535")
    sock = listen(args.host, args.port)  # before saying "serving": a taken port fails here, with its number
    try:
        port = sock.getsockname()[1]
        if auth is None and not is_loopback(args.host):
            print(OPEN_WARNING.format(host=args.host, port=port, env=PASSWORD_ENV), file=sys.stderr, flush=True)
        retention_days = args.retention / 86400 if args.retention else None
        hooks = Hooks()
        store = Store(open_engine(args.db), hooks=hooks, retention_days=retention_days)
        if store.retention is not None:
            store.retention.start()
        try:
            app = build_app(store, hooks, auth, prefix)
            shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
            print(
                f"llm-monitor: serving {store.engine.location} at http://{shown}:{port}{prefix}/"
                f" ({'basic auth' if auth else 'no auth'}); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            run_server(uvicorn.Server(uvicorn.Config(app, log_level=args.log_level)), sock, "server")
        finally:
            store.close()
    finally:
        sock.close()
    return 0


def run_server(server: Any, sock: socket.socket, what: str) -> None:
    """Run a ``uvicorn.Server`` on ``sock`` until interrupted; :class:`CommandFailed` if it never started.

    uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit normally (so the caller closes its store)
    instead of dying by the signal."""
    previous = signal.signal(signal.SIGTERM, _exit_normally)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise CommandFailed(f"the {what} did not start (see the log above)")


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)
