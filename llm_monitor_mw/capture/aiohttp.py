"""aiohttp capture: a client middleware (aiohttp >= 3.12) that records LLM calls through the shared `Capturer`.

The request goes through :meth:`Capturer.begin` as a small httpx-like view (gates apply: a refused call raises
``CallRefused`` before anything is sent). The response body is tee'd on the *feed* side: the response's
``StreamReader`` is switched to a subclass (same slots, so ``__class__`` can be assigned) whose ``feed_data``,
``feed_eof`` and ``set_exception`` also feed the `PendingCall`. So every byte is seen exactly once, as it arrives,
whichever way the caller reads (``read``, ``readany``, ``readline``, ``iter_chunked``, ``iter_any``, ``text``,
``json``), and nothing the caller reads changes: no read method is wrapped. The call ends exactly once:

* ``feed_eof`` (the body ended) -> complete;
* ``set_exception`` with aiohttp's "Connection closed" marker (``release()``/``close()`` before the end) -> closed
  early, or dropped when done by a finaliser; any other exception (the connection broke, a read timeout) -> broken;
* the response garbage-collected unclosed -> dropped (a weak reference's callback), at the last chunk received;
* the request raising (connection refused, timeout) -> failed, and the exception is re-raised unchanged.

What "read" means differs from httpx's tee in one way: bytes count when they arrive, not when the caller takes them
(so a response closed after its whole body arrived is complete). Anything that fails in here is logged and counted;
the response then passes through unrecorded.
"""

from __future__ import annotations

import copy
import logging
import weakref
from time import perf_counter
from typing import Any

from aiohttp import client_reqrep
from aiohttp.client_middlewares import ClientHandlerType
from aiohttp.client_reqrep import ClientRequest, ClientResponse
from aiohttp.streams import EmptyStreamReader, StreamReader

from .aiohttp_mark import inside_httpx_capture
from .open_calls import DROPPED, in_async_generator_finaliser, in_collection
from .open_calls import discard as forget_open_call
from .pending import ABANDONED, BROKEN, COMPLETE, FAILED, PendingCall
from .transport import Capturer

logger = logging.getLogger("llm_monitor_mw")

# What ``ClientResponse.release()``/``close()`` sets on an unfinished body (one shared instance in aiohttp).
_CLOSED_BY_CALLER: BaseException | None = getattr(client_reqrep, "_CONNECTION_CLOSED_EXCEPTION", None)
_CONTENT_ENCODING = "content-encoding"


class _URLView:
    """The parts of an httpx ``URL`` that :meth:`Capturer.begin` reads, from a ``yarl.URL``."""

    __slots__ = ("_url", "host", "path", "port")

    def __init__(self, url: Any) -> None:
        self._url = url
        self.host = url.host or ""
        self.port = url.explicit_port  # None for the scheme's default port, as httpx's URL.port
        self.path = url.path

    @property
    def query(self) -> bytes:
        return self._url.raw_query_string.encode("latin-1")


class RequestView:
    """An aiohttp ``ClientRequest`` as the httpx-like request :meth:`Capturer.begin` takes (read-only)."""

    __slots__ = ("_request", "headers", "method", "url")

    def __init__(self, request: ClientRequest) -> None:
        self._request = request
        self.method = request.method
        self.url = _URLView(request.url)
        self.headers = request.headers  # a CIMultiDict: header_values falls back to .get()

    @property
    def content(self) -> bytes | None:
        """The request body when it is in memory (bytes, str or JSON payloads), else ``None`` (a stream, a file)."""
        body = getattr(self._request, "_body", None)
        value = getattr(body, "_value", None)
        return value if isinstance(value, bytes) else None


class _DecodedHeaders:
    """Response headers of a body aiohttp decompresses itself: ``content-encoding`` no longer applies to it."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def get(self, name: str, default: Any = None) -> Any:
        if name.lower() == _CONTENT_ENCODING:
            return default
        return self._headers.get(name, default)


class _ResponseRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a response that knows which tap it ends (no cycle: the tap holds the reference)."""

    __slots__ = ("key",)


class _Tap:
    """The capture side of one response body."""

    __slots__ = ("capturer", "feed", "pending", "ref")

    def __init__(self, capturer: Capturer, pending: PendingCall, ref: _ResponseRef) -> None:
        self.capturer = capturer
        self.pending = pending
        self.feed = pending.feeder()
        self.ref = ref


# Taps by ``id()`` of their (swapped) StreamReader; StreamReader has ``__slots__`` and no ``__weakref__``, so no
# attribute or weak map can hold them. An entry lives at most as long as its response (which holds the reader), so
# an id is never reused while its entry exists.
_taps: dict[int, _Tap] = {}


def _response_gone(ref: _ResponseRef) -> None:
    """The response was garbage-collected before its body ended: record it as dropped, at the last chunk."""
    tap = _taps.get(ref.key)
    if tap is not None and tap.ref is ref:
        del _taps[ref.key]
        tap.pending.finish(DROPPED)


_feed_data = StreamReader.feed_data
_feed_eof = StreamReader.feed_eof
_set_exception = StreamReader.set_exception


class _TapReader(StreamReader):
    """``StreamReader`` that also feeds its tap; installed by assigning ``__class__`` (no slots added)."""

    __slots__ = ()

    def feed_data(self, data: bytes, *args: Any) -> Any:
        result = _feed_data(self, data, *args)
        tap = _taps.get(id(self))
        if tap is not None and data:
            tap.pending.read_at = perf_counter()
            tap.feed(data)  # never raises (PendingCall's feeders catch and note)
        return result

    def feed_eof(self) -> None:
        try:
            _feed_eof(self)
        finally:
            tap = _taps.pop(id(self), None)
            if tap is not None:
                tap.pending.finish(COMPLETE)

    def set_exception(self, exc: BaseException, *args: Any) -> None:
        try:
            _set_exception(self, exc, *args)
        finally:
            tap = _taps.pop(id(self), None)
            if tap is not None:
                _end(tap.pending, exc)


def _end(pending: PendingCall, exc: BaseException) -> None:
    if exc is _CLOSED_BY_CALLER:
        pending.finish(DROPPED if in_collection() or in_async_generator_finaliser() else ABANDONED)
    else:
        pending.finish(BROKEN, exc)


def _attach(capturer: Capturer, pending: PendingCall, response: ClientResponse) -> None:
    """Headers arrived: start the record's response side and tee the body (never raises)."""
    installed = False
    try:
        content = response.content
        headers: Any = response.headers
        if getattr(content, "total_compressed_bytes", None) is not None:  # aiohttp inflates this body itself
            headers = _DecodedHeaders(headers)
        pending.attach(response.status, headers)
        pending.read_at = perf_counter()
        if type(content) is not StreamReader:
            if isinstance(content, EmptyStreamReader):  # no body (HEAD, 204, 304)
                installed = True
                pending.finish(COMPLETE)
            else:
                raise TypeError(f"unexpected response content type {type(content)!r}")
            return
        ref = _ResponseRef(response, _response_gone)
        ref.key = key = id(content)
        tap = _Tap(capturer, pending, ref)
        buffered = tuple(content._buffer)  # arrived with the headers, before the tap existed
        if buffered:
            offset = content._buffer_offset
            if offset:
                buffered = (buffered[0][offset:], *buffered[1:])
            feed = tap.feed
            for chunk in buffered:
                feed(chunk)
        installed = True
        exc = content.exception()
        if exc is not None:
            _end(pending, exc)
        elif content.is_eof():
            pending.finish(COMPLETE)
        else:
            _taps[key] = tap
            content.__class__ = _TapReader
    except Exception as exc:
        capturer.failed(exc)  # counted; the response passes through unrecorded
        if not installed:
            forget_open_call(pending)  # nothing will finish it: not to be recorded at exit either
        else:
            _taps.pop(id(response.content), None)
            pending.finish(ABANDONED)


class CaptureMiddleware:
    """An aiohttp client middleware that records LLM calls (``monitor.aiohttp_middleware()`` makes one).

    Put it last in the list (closest to the network) so that each HTTP attempt is one record. Requests an
    instrumented httpx client already captures (litellm's aiohttp transport) pass through unrecorded here.
    """

    def __init__(self, capturer: Capturer) -> None:
        # Its own copy: injecting ``stream_options`` means rebuilding an httpx request, which this path cannot do.
        capturer = copy.copy(capturer)
        capturer.stream_usage = False
        self._capturer = capturer

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if inside_httpx_capture.get():
            return await handler(request)
        capturer = self._capturer
        try:
            view = RequestView(request)
        except Exception as exc:
            capturer.failed(exc)
            return await handler(request)
        pending, _ = capturer.begin(view)  # raises only CallRefused (a gate refused the call)
        if pending is None:
            return await handler(request)
        try:
            response = await handler(request)
        except BaseException as exc:
            pending.finish(FAILED, exc)
            raise
        _attach(capturer, pending, response)
        return response
