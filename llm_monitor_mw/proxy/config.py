"""The proxy's settings: routes, attribution headers, the client key, timeouts (validated when built)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .routes import RouteError, RouteTable

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110 token)
_TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

PROXY_KEY_HEADER = "x-proxy-key"
"""Where clients send the proxy's own key (also accepted: ``Proxy-Authorization: Bearer <key>``)."""

MAX_ATTRIBUTION_CHARS = 200
"""Longer user / tag header values are cut to this many characters."""


def header_name(text: str) -> bytes:
    """A header name in lower case, as ASGI servers give them; :class:`RouteError` if it is not one."""
    name = text.strip()
    if not _TOKEN.match(name):
        raise RouteError(f"{text!r} is not an HTTP header name")
    return name.lower().encode("ascii")


def tag_header(spec: str) -> tuple[bytes, str]:
    """``X-Feature`` -> ``(b"x-feature", "feature")``; ``X-Feature=feat`` -> ``(b"x-feature", "feat")``.

    Without ``=tag`` the tag is the header's name in lower case without a leading ``x-``.
    """
    name, sep, tag = spec.partition("=")
    header = header_name(name)
    tag = tag.strip() if sep else header.decode("ascii").removeprefix("x-")
    if not _TAG.match(tag) or tag in ("user", "client"):
        raise RouteError(f"--tag-header {spec!r}: the tag name must be 1-64 of A-Z a-z 0-9 _ . : - (not user/client)")
    return header, tag


@dataclass(frozen=True)
class ProxyConfig:
    """Everything :func:`~llm_monitor_mw.proxy.create_proxy_app` needs besides the transport and the dashboard.

    Args:
        routes: prefix -> upstream (``/`` is the default route; a path no prefix matches gets a 404).
        dashboard_prefix: where the dashboard, API, ``/metrics`` and ``/health`` are served (``/monitoring``);
            requests under it are never forwarded. ``None``: no dashboard, every path is forwarded.
        user_header: the request header whose value becomes the call's ``user``.
        tag_headers: request header -> tag name; each present header becomes a tag.
        forward_attribution_headers: also forward the user / tag headers upstream (default: removed).
        proxy_key: the key clients must send (``X-Proxy-Key`` or ``Proxy-Authorization: Bearer``); ``None``: open.
        timeout: seconds to wait for the upstream to answer, or between two chunks (read, write, pool).
        connect_timeout: seconds to wait for a connection to the upstream.
        max_connections: connections to all upstreams at once (more requests wait, up to ``timeout``).
        keep_request_bytes: how much of each request body is kept for the record (the model, content capture);
            the rest streams past; the first and last 4 KiB are kept beyond it.
    """

    routes: RouteTable
    dashboard_prefix: str | None = "/monitoring"
    user_header: bytes | None = None
    tag_headers: dict[bytes, str] = field(default_factory=dict)
    forward_attribution_headers: bool = False
    proxy_key: bytes | None = None
    timeout: float = 600.0
    connect_timeout: float = 10.0
    max_connections: int = 1000
    keep_request_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.connect_timeout <= 0 or self.max_connections < 1 or self.keep_request_bytes < 0:
            raise RouteError("timeouts and max_connections must be positive")
        if self.proxy_key is not None and not self.proxy_key:
            raise RouteError("the proxy key must not be empty")
        prefix = self.dashboard_prefix
        if prefix is not None:
            if prefix in ("", "/") or not prefix.startswith("/") or prefix.endswith("/"):
                raise RouteError(f"dashboard prefix {prefix!r}: expected a path like /monitoring (not /)")
            for route in self.routes.prefixes:
                if route != "/" and (route == prefix or route.startswith(prefix + "/")):
                    raise RouteError(f"route {route} is under the dashboard prefix {prefix}; it would never be reached")
        if self.user_header is not None and self.user_header in self.tag_headers:
            raise RouteError("one header cannot be both the user header and a tag header")
