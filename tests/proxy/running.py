"""Serving ASGI apps on 127.0.0.1 for the proxy tests: uvicorn in a thread, as ``llm-monitor proxy`` serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from llm_monitor_mw import BasicAuth, Monitor
from llm_monitor_mw.proxy import ProxyConfig, RouteTable, create_proxy_app, parse_upstream
from tests.conftest import records


@contextmanager
def serve(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Run ``app`` with uvicorn (no Date/Server headers of its own) until the block ends; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan=lifespan,
        timeout_graceful_shutdown=2,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="proxy-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def config(upstream: str | None = None, routes: dict[str, str] | None = None, **kwargs: Any) -> ProxyConfig:
    """A :class:`ProxyConfig` from URLs: ``upstream`` is the default route, ``routes`` maps prefix -> URL."""
    table = [(prefix, parse_upstream(url)) for prefix, url in (routes or {}).items()]
    if upstream is not None:
        table.append(("/", parse_upstream(upstream)))
    return ProxyConfig(routes=RouteTable(table), **kwargs)


@contextmanager
def proxy(
    monitor: Monitor, cfg: ProxyConfig, *, auth: BasicAuth | None = None, dashboard: bool = True
) -> Iterator[str]:
    """The monitoring proxy for ``monitor`` served on a free port (as the CLI builds it); yields its base URL."""
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=cfg.max_connections))
    app = create_proxy_app(
        cfg,
        monitor.async_transport(inner),
        monitor.hooks,
        monitor.asgi_app(auth) if dashboard and cfg.dashboard_prefix else None,
    )
    with serve(app, lifespan="on") as url:
        yield url


def recorded(monitor: Monitor, count: int = 1, wait: float = 10.0) -> list[dict[str, Any]]:
    """The records once there are at least ``count`` (oldest first).

    The proxy finishes a record after it has sent the last chunk: a client holding a complete body may ask before
    the proxy's side has queued it, so this waits (up to ``wait`` seconds) for the record to arrive.
    """
    deadline = time.monotonic() + wait
    while True:
        rows = records(monitor)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)
