"""``llm-monitor proxy``: a streaming reverse proxy on the capture transport, for clients that are not Python.

:func:`create_proxy_app` builds the ASGI app (:mod:`.server`): the forwarding app (:mod:`.app`) with hop-by-hop
header handling (:mod:`.headers`) and prefix routes (:mod:`.routes`), configured by a :class:`ProxyConfig`
(:mod:`.config`), and the dashboard under its prefix. The command line lives in :mod:`llm_monitor_mw.cli.proxy`.
"""

from __future__ import annotations

from .config import PROXY_KEY_HEADER, ProxyConfig, header_name, tag_header
from .routes import RouteError, RouteTable, Upstream, parse_prefix, parse_route, parse_upstream
from .server import ProxyServer, create_proxy_app

__all__ = [
    "PROXY_KEY_HEADER",
    "ProxyConfig",
    "ProxyServer",
    "RouteError",
    "RouteTable",
    "Upstream",
    "create_proxy_app",
    "header_name",
    "parse_prefix",
    "parse_route",
    "parse_upstream",
    "tag_header",
]
