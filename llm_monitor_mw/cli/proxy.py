"""``llm-monitor proxy``: a monitoring reverse proxy in front of an LLM API, recording every call it forwards.

Builds a :class:`~llm_monitor_mw.Monitor` on ``--db`` (created if missing), the forwarding app on the monitor's
async capture transport and the dashboard under ``--dashboard-prefix``, and serves them with uvicorn. Like the
demo, this module is a host of the package: it is the one place of the proxy that builds a ``Monitor``.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from ..proxy import ProxyConfig, RouteError, RouteTable, create_proxy_app, header_name, parse_upstream, tag_header
from ..proxy.routes import parse_route
from ..web.auth import BasicAuth
from .errors import UsageError
from .serve import DEFAULT_USERNAME, OPEN_WARNING, PASSWORD_ENV, USERNAME_ENV, is_loopback, listen, run_server

DEFAULT_PORT = 8001

OPEN_PROXY_WARNING = """\
WARNING: llm-monitor proxy forwards requests from anyone who can reach {host}:{port} (no --require-key-env).
WARNING: clients still need their own provider keys, but a keyless upstream (Ollama, vLLM) is open to them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``proxy`` subcommand's options."""
    parser.add_argument(
        "upstream",
        nargs="?",
        metavar="UPSTREAM",
        help="default upstream for every path no --route matches, e.g. https://api.openai.com",
    )
    parser.add_argument(
        "--route",
        action="append",
        metavar="PREFIX=URL",
        help="forward paths under PREFIX (stripped) to URL, e.g. /anthropic=https://api.anthropic.com; repeatable",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 for every interface")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument(
        "--db", default="llm_monitor.db", help="the SQLite file (created if missing) or postgresql:// URL to record to"
    )
    parser.add_argument("--dashboard-prefix", default="/monitoring", help="where the dashboard, API, /metrics are")
    parser.add_argument("--no-dashboard", action="store_true", help="serve no dashboard: forward every path")
    parser.add_argument(
        "--username", help=f"dashboard basic-auth user (or ${USERNAME_ENV}; default {DEFAULT_USERNAME})"
    )
    parser.add_argument(
        "--password-env",
        default=PASSWORD_ENV,
        metavar="VAR",
        help="environment variable holding the dashboard password",
    )
    parser.add_argument("--user-header", metavar="NAME", help="request header whose value is the call's user")
    parser.add_argument(
        "--tag-header",
        action="append",
        metavar="NAME[=TAG]",
        help="request header recorded as a tag (default tag: the name without x-), e.g. X-Feature; repeatable",
    )
    parser.add_argument(
        "--forward-attribution-headers",
        action="store_true",
        help="also send the user/tag headers upstream (by default they are removed)",
    )
    parser.add_argument(
        "--require-key-env",
        metavar="VAR",
        help="environment variable holding a key clients must send as X-Proxy-Key or Proxy-Authorization: Bearer",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for an answer or the next chunk")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for a connection")
    parser.add_argument("--capture-content", action="store_true", help="store prompts and responses (off by default)")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level",
    )


def config_from(args: argparse.Namespace) -> ProxyConfig:
    """The :class:`ProxyConfig` for the parsed options; :class:`UsageError` says what is wrong."""
    try:
        routes = [parse_route(spec) for spec in args.route or ()]
        if args.upstream:
            routes.append(("/", parse_upstream(args.upstream)))
        if not routes:
            raise UsageError("give an UPSTREAM URL (e.g. https://api.openai.com) or at least one --route")
        key = None
        if args.require_key_env:
            value = os.environ.get(args.require_key_env, "")
            if not value.strip():
                raise UsageError(f"--require-key-env {args.require_key_env}: that environment variable is not set")
            key = value.strip().encode("utf-8")
        prefix = None if args.no_dashboard else "/" + args.dashboard_prefix.strip().strip("/")
        return ProxyConfig(
            routes=RouteTable(routes),
            dashboard_prefix=prefix,
            user_header=header_name(args.user_header) if args.user_header else None,
            tag_headers=dict(tag_header(spec) for spec in args.tag_header or ()),
            forward_attribution_headers=args.forward_attribution_headers,
            proxy_key=key,
            timeout=args.timeout,
            connect_timeout=args.connect_timeout,
        )
    except RouteError as exc:
        raise UsageError(str(exc)) from None


def dashboard_auth(args: argparse.Namespace) -> BasicAuth | None:
    """Basic auth from ``--username`` and the ``--password-env`` variable, ``None`` for an open dashboard."""
    password = os.environ.get(args.password_env) or None
    username = args.username or os.environ.get(USERNAME_ENV)
    if password is None:
        if args.username:
            raise UsageError(f"--username needs a password: set the {args.password_env} environment variable")
        return None
    return BasicAuth(username or DEFAULT_USERNAME, password)


def run(args: argparse.Namespace) -> int:
    """Serve the proxy until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    from ..monitor import Monitor  # imported here: the other commands start without capture loaded

    config = config_from(args)
    auth = None if args.no_dashboard else dashboard_auth(args)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not between 0 and 65535")
    sock = listen(args.host, args.port)
    try:
        port = sock.getsockname()[1]
        if not is_loopback(args.host):
            if config.dashboard_prefix is not None and auth is None:
                print(OPEN_WARNING.format(host=args.host, port=port, env=args.password_env), file=sys.stderr)
            if config.proxy_key is None:
                print(OPEN_PROXY_WARNING.format(host=args.host, port=port), file=sys.stderr, flush=True)
        monitor = Monitor(args.db, capture_content=args.capture_content)
        try:
            inner = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=100)
            )
            dashboard = None if config.dashboard_prefix is None else monitor.asgi_app(auth)
            app = create_proxy_app(config, monitor.async_transport(inner), monitor.hooks, dashboard)
            shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
            routes = ", ".join(f"{p} -> {u}" for p, u in config.routes.describe())
            where = "no dashboard" if dashboard is None else f"dashboard at {config.dashboard_prefix}/"
            print(
                f"llm-monitor: proxy on http://{shown}:{port} ({routes}); {where}; recording to"
                f" {monitor.store.engine.location}; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    log_level=args.log_level,
                    lifespan="on",
                    access_log=False,
                    server_header=False,  # the upstream's Server and Date headers pass through instead
                    date_header=False,
                    proxy_headers=False,  # the client tag is the peer's address, never an X-Forwarded-For claim
                )
            )
            run_server(server, sock, "proxy")
        finally:
            monitor.close()
    finally:
        sock.close()
    return 0
