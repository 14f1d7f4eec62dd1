"""``instrument_aiohttp()``: add the capture middleware to every ``aiohttp.ClientSession`` created afterwards.

``ClientSession.__init__`` is patched (subclasses such as google-genai's inherit it); the session's own middlewares
stay, ours is appended last so it sees each HTTP attempt as sent. Sessions created before keep what they have, and a
request made with its own ``middlewares=`` argument (which replaces the session's) is not captured.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("llm_monitor_mw")

_state: dict[str, Any] = {}  # "init": the original ClientSession.__init__, "middleware": the one we add


def instrument(middleware: Any, failed: Callable[[BaseException], None]) -> None:
    """Patch ``aiohttp.ClientSession.__init__`` so that new sessions get ``middleware`` (``failed`` counts errors)."""
    import aiohttp

    if _state:
        raise RuntimeError("aiohttp is already instrumented; call uninstrument_aiohttp() first")
    original = aiohttp.ClientSession.__init__
    kind = type(middleware)

    @functools.wraps(original)
    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            present = tuple(self._middlewares or ())
            if not any(isinstance(m, kind) for m in present):
                self._middlewares = (*present, middleware)
        except Exception as exc:  # the session works as created, unrecorded
            logger.warning("llm_monitor_mw: could not add the capture middleware to %r: %r", self, exc)
            failed(exc)

    _state.update(init=original, middleware=middleware)
    aiohttp.ClientSession.__init__ = patched  # type: ignore[method-assign]


def uninstrument() -> None:
    """Undo :func:`instrument`; sessions created meanwhile keep the middleware."""
    if not _state:
        return
    import aiohttp

    aiohttp.ClientSession.__init__ = _state["init"]  # type: ignore[method-assign]
    _state.clear()


def installed_middleware() -> Any:
    """The middleware new sessions get, ``None`` when aiohttp is not instrumented."""
    return _state.get("middleware")
