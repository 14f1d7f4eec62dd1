"""Marks requests that an instrumented httpx client is already capturing, so the aiohttp layer below skips them.

litellm (``LiteLLMAiohttpTransport``) and ``httpx-aiohttp`` (the OpenAI SDK's ``DefaultAioHttpClient``) send httpx
requests through an aiohttp session. With both layers instrumented, the httpx transport records the call and the
aiohttp middleware must not record it a second time. :class:`MarkedAsyncTransport` sits between our httpx
transport and the client's own one and sets :data:`inside_httpx_capture` while the request is being sent. No
aiohttp import here: httpx instrumentation uses this whether aiohttp is installed or not.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from .httplibs import ASYNC_TRANSPORT_BASES

inside_httpx_capture: ContextVar[bool] = ContextVar("llm_monitor_mw_inside_httpx_capture", default=False)
"""True while an instrumented httpx client's own transport sends a request (in that task)."""


class MarkedAsyncTransport(*ASYNC_TRANSPORT_BASES):  # type: ignore[misc]
    """An async httpx/httpx2 transport that sends through ``inner``, with :data:`inside_httpx_capture` set."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def handle_async_request(self, request: Any) -> Any:
        token = inside_httpx_capture.set(True)
        try:
            return await self._inner.handle_async_request(request)
        finally:
            inside_httpx_capture.reset(token)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> MarkedAsyncTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self._inner.__aexit__(*args)
