"""Which headers a proxy forwards: everything end-to-end, nothing hop-by-hop (RFC 9110 section 7.6.1).

Hop-by-hop: ``Connection`` and every header it names, ``Keep-Alive``, ``Proxy-*`` (``Proxy-Authorization``,
``Proxy-Connection``...), ``TE``, ``Trailer``, ``Transfer-Encoding`` and ``Upgrade``. The servers on each side
(uvicorn towards the client, httpx towards the upstream) frame the message themselves. Names are compared in
lower case; values are passed through as the bytes that arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Header = tuple[bytes, bytes]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"})
"""Always dropped (and, by prefix, every ``proxy-*`` header)."""

REQUEST_ONLY = frozenset({b"host", b"expect"})
"""Also dropped from requests: ``Host`` is the upstream's (httpx writes it from the URL); uvicorn has already
answered ``Expect: 100-continue`` to the client."""


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """The header names that ``Connection`` headers list (lower case), which are hop-by-hop too."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(named)


def _hop_by_hop(lower: bytes, named: frozenset[bytes]) -> bool:
    return lower in HOP_BY_HOP or lower.startswith(b"proxy-") or lower in named


def request_headers(
    headers: Iterable[Header], watched: Mapping[bytes, bool]
) -> tuple[list[Header], dict[bytes, bytes]]:
    """Split a request's ASGI headers (names already lower case) into what is forwarded and what is watched.

    ``watched`` maps a header name to whether it is forwarded as well (attribution headers when the operator asks,
    never the proxy key). Returns the forwarded headers in their order and the first value of each watched header
    seen (``Proxy-*`` ones too, though those are never forwarded).
    """
    items = headers if isinstance(headers, list) else list(headers)
    named = connection_tokens(items) if any(name == b"connection" for name, _ in items) else frozenset()
    forwarded: list[Header] = []
    found: dict[bytes, bytes] = {}
    for name, value in items:
        keep = watched.get(name)
        if keep is not None:
            found.setdefault(name, value)
            if not keep:
                continue
        if name in REQUEST_ONLY or _hop_by_hop(name, named):
            continue
        forwarded.append((name, value))
    return forwarded, found


def response_headers(headers: Iterable[Header]) -> list[Header]:
    """An upstream response's end-to-end headers for ASGI (names lower-cased, values and order unchanged)."""
    items = [(name.lower(), value) for name, value in headers]
    named = connection_tokens(items) if any(name == b"connection" for name, _ in items) else frozenset()
    return [(name, value) for name, value in items if not _hop_by_hop(name, named)]
