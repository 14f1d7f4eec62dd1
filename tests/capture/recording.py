"""An inner transport that records exactly what it hands up, to compare with what the caller receives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx


class _Stream(httpx.SyncByteStream):
    def __init__(self, inner: Any, log: list[tuple[float, bytes]]) -> None:
        self.inner, self.log = inner, log

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.log.append((time.perf_counter(), chunk))
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, log: list[tuple[float, bytes]]) -> None:
        self.inner, self.log = inner, log

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.log.append((time.perf_counter(), chunk))
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` that logs each raw chunk (with its time) and the response/exception it produced."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[tuple[float, bytes]] = []
        self.response: httpx.Response | None = None
        self.exception: BaseException | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except BaseException as exc:
            self.exception = exc
            raise
        response.stream = _Stream(response.stream, self.chunks)
        self.response = response
        return response


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[tuple[float, bytes]] = []
        self.response: httpx.Response | None = None
        self.exception: BaseException | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except BaseException as exc:
            self.exception = exc
            raise
        response.stream = _AsyncStream(response.stream, self.chunks)
        self.response = response
        return response
