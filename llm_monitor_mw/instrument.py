"""``instrument_httpx()``: wrap the transports of every httpx/httpx2 client created afterwards."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .capture.aiohttp_mark import MarkedAsyncTransport
from .capture.httplibs import LIBRARIES
from .capture.transport import AsyncMonitorTransport, MonitorTransport

_originals: dict[type, Callable[..., None]] = {}


def _wrap_client(client: Any, wrap: Callable[[Any], Any]) -> None:
    client._transport = wrap(client._transport)
    client._mounts = {pattern: (None if t is None else wrap(t)) for pattern, t in client._mounts.items()}


def instrument(make_sync: Callable[[Any], Any], make_async: Callable[[Any], Any]) -> None:
    """Patch ``Client.__init__``/``AsyncClient.__init__`` of each installed library.

    The client's own transports (with its proxies, TLS and retry settings) become the inner transports.
    """
    if _originals:
        raise RuntimeError("httpx is already instrumented; call uninstrument_httpx() first")

    def wrap_sync(t: Any) -> Any:
        return t if isinstance(t, MonitorTransport) else make_sync(t)

    def wrap_async(t: Any) -> Any:
        # The mark tells an instrumented aiohttp layer below (litellm's aiohttp transport) not to record it again.
        return t if isinstance(t, AsyncMonitorTransport) else make_async(MarkedAsyncTransport(t))

    for lib in LIBRARIES:
        for cls, wrap in ((lib.Client, wrap_sync), (lib.AsyncClient, wrap_async)):
            original = cls.__init__

            @functools.wraps(original)
            def patched(self: Any, *args: Any, __original: Any = original, __wrap: Any = wrap, **kwargs: Any) -> None:
                __original(self, *args, **kwargs)
                _wrap_client(self, __wrap)

            _originals[cls] = original
            cls.__init__ = patched  # type: ignore[method-assign]


def uninstrument() -> None:
    """Undo :func:`instrument`; clients created meanwhile keep their wrapped transports."""
    for cls, original in _originals.items():
        cls.__init__ = original  # type: ignore[method-assign]
    _originals.clear()


def is_instrumented() -> bool:
    return bool(_originals)
