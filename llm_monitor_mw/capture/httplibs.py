"""The HTTP libraries we can wrap: ``httpx`` (required) and ``httpx2`` (when installed).

The two share an API but not classes, and SDKs re-export the classes under their own module names, so tell them
apart with ``isinstance`` against whichever modules import, never by ``__module__`` strings.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx

try:
    import httpx2
except ImportError:  # pragma: no cover - depends on the environment
    httpx2 = None  # type: ignore[assignment]

LIBRARIES: tuple[ModuleType, ...] = (httpx,) if httpx2 is None else (httpx, httpx2)

SYNC_STREAM_BASES: tuple[type, ...] = tuple(lib.SyncByteStream for lib in LIBRARIES)
ASYNC_STREAM_BASES: tuple[type, ...] = tuple(lib.AsyncByteStream for lib in LIBRARIES)
SYNC_TRANSPORT_BASES: tuple[type, ...] = tuple(lib.BaseTransport for lib in LIBRARIES)
ASYNC_TRANSPORT_BASES: tuple[type, ...] = tuple(lib.AsyncBaseTransport for lib in LIBRARIES)


def library_of(request: object) -> ModuleType:
    """The library whose ``Request`` class ``request`` is an instance of."""
    for lib in LIBRARIES:
        if isinstance(request, lib.Request):
            return lib
    raise TypeError(f"not an httpx or httpx2 request: {type(request)!r}")


def header_values(headers: Any, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    """The values of the ``wanted`` (lower-case) headers, in one pass (the last one wins on repeats).

    ``Headers.get`` costs 3-5 µs per call (it lower-cases and joins on every lookup); httpx and httpx2 both keep
    ``_list`` as ``(raw_key, lower_key, value)`` triples, so one scan of it serves every name we need. Falls back
    to the public API if that ever changes.
    """
    try:
        return {lower: value for _, lower, value in headers._list if lower in wanted}
    except (AttributeError, TypeError, ValueError):
        found: dict[bytes, bytes] = {}
        for name in wanted:
            value = headers.get(name.decode("ascii"))
            if value is not None:
                found[name] = value.encode("latin-1")
        return found
