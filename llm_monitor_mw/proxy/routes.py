"""Where a request goes: the upstream for its path, by the longest matching prefix (``/anthropic=https://...``).

A prefix matches whole path segments (``/anthropic`` matches ``/anthropic`` and ``/anthropic/v1/messages``, not
``/anthropics``) and is stripped before forwarding: ``/anthropic/v1/messages`` goes to
``https://api.anthropic.com/v1/messages`` (or under the upstream URL's own path, if it has one). Matching and
stripping work on the raw (still percent-encoded) path, which is forwarded as it arrived.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

_PREFIX_CHARS = frozenset(string.ascii_letters + string.digits + "-._~/")


class RouteError(ValueError):
    """An upstream URL or a ``--route`` that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream server: the base URL requests are forwarded under."""

    url: httpx.URL
    """Scheme, host and port (and the base path, if any) of the upstream."""
    base_path: bytes
    """The upstream URL's raw path without its trailing ``/`` (usually empty)."""

    @property
    def label(self) -> str:
        """How logs and messages name it: ``https://api.openai.com``."""
        return str(self.url).rstrip("/")

    def target(self, rest: bytes, query: bytes) -> httpx.URL:
        """The upstream URL for a request path ``rest`` (after the route's prefix) and raw query string."""
        raw = self.base_path + rest
        return self.url.copy_with(raw_path=raw + b"?" + query if query else raw)


def parse_upstream(text: str) -> Upstream:
    """An :class:`Upstream` from ``http(s)://host[:port][/base]``; :class:`RouteError` for anything else."""
    try:
        url = httpx.URL(text.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise RouteError(f"{text!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise RouteError(f"{text!r}: the upstream must be an http:// or https:// URL with a host")
    if url.query or url.fragment or url.userinfo:
        raise RouteError(f"{text!r}: the upstream URL takes no query, fragment or user:password")
    return Upstream(url, url.raw_path.rstrip(b"/"))


def parse_prefix(text: str) -> str:
    """``/anthropic/`` -> ``/anthropic``; ``/`` -> ``/``; :class:`RouteError` for an unclean path."""
    stripped = text.strip().strip("/")
    if not stripped:
        return "/"
    if not set(stripped) <= _PREFIX_CHARS or any(part in ("", ".", "..") for part in stripped.split("/")):
        raise RouteError(f"route prefix {text!r} is not a clean path like /anthropic")
    return "/" + stripped


def parse_route(spec: str) -> tuple[str, Upstream]:
    """``/anthropic=https://api.anthropic.com`` -> ``("/anthropic", Upstream(...))``."""
    prefix, sep, url = spec.partition("=")
    if not sep or not url.strip():
        raise RouteError(f"--route {spec!r}: expected PREFIX=URL, e.g. /anthropic=https://api.anthropic.com")
    return parse_prefix(prefix), parse_upstream(url)


class RouteTable:
    """Prefix -> upstream, longest prefix first; ``/`` is the default route."""

    def __init__(self, routes: Iterable[tuple[str, Upstream]]) -> None:
        table: dict[bytes, Upstream] = {}
        for prefix, upstream in routes:
            key = b"" if prefix == "/" else prefix.encode("ascii")
            if key in table:
                raise RouteError(f"two upstreams for the prefix {prefix}")
            table[key] = upstream
        self._routes = sorted(table.items(), key=lambda item: len(item[0]), reverse=True)

    @property
    def prefixes(self) -> list[str]:
        """The configured prefixes, longest first (``/`` for the default route)."""
        return [prefix.decode("ascii") or "/" for prefix, _ in self._routes]

    def describe(self) -> list[tuple[str, str]]:
        """``(prefix, upstream URL)`` per route, longest prefix first."""
        return [(prefix.decode("ascii") or "/", upstream.label) for prefix, upstream in self._routes]

    def match(self, raw_path: bytes) -> tuple[Upstream, bytes] | None:
        """The upstream for ``raw_path`` and the path to forward (the prefix stripped), else ``None``."""
        for prefix, upstream in self._routes:
            if not prefix:
                return upstream, raw_path
            if raw_path.startswith(prefix):
                rest = raw_path[len(prefix) :]
                if not rest:
                    return upstream, b"/"
                if rest[:1] == b"/":
                    return upstream, rest
        return None
