"""Wrapping transports (sync and async) that tee LLM responses into `PendingCall`s.

The hot path: resolve the route (cached dict lookup), note two time stamps, keep a reference to the request
body, and swap the response's byte stream for one that yields each raw chunk the moment it arrives. Everything
else (decoding, parsing, pricing, SQL) happens on the writer thread. Anything that goes wrong in here is logged
and counted; the caller always gets the inner transport's bytes, headers and exceptions unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from time import perf_counter
from typing import Any

from ..context import current_inbound, current_tags, current_trace
from ..hooks import Hooks
from .httplibs import (
    ASYNC_STREAM_BASES,
    ASYNC_TRANSPORT_BASES,
    SYNC_STREAM_BASES,
    SYNC_TRANSPORT_BASES,
    header_values,
    library_of,
)
from .open_calls import DROPPED, in_async_generator_finaliser, in_collection
from .open_calls import discard as forget_open_call
from .pending import ABANDONED, BROKEN, COMPLETE, FAILED, PendingCall
from .providers import Registry
from .retries import RetryGrouper

logger = logging.getLogger("llm_monitor_mw")

# Sent by the official OpenAI/Anthropic SDKs on every attempt: 0 for the first, n for the n-th retry.
_RETRY_HEADER = b"x-stainless-retry-count"
# Where the SDKs put the API key (OpenAI/compatible: bearer; Anthropic: x-api-key; Azure: api-key; Gemini:
# x-goog-api-key or the ``key`` query parameter). Kept on the pending call only, to be fingerprinted.
_KEY_HEADERS = (b"authorization", b"x-api-key", b"api-key", b"x-goog-api-key")
_BEGIN_HEADERS = frozenset({_RETRY_HEADER, *_KEY_HEADERS})
_STREAM_OPTIONS = b'"stream_options"'
_STREAM_TRUE = (b'"stream":true', b'"stream": true')


class _Ids:
    """Cheap process-unique call ids (a random per-process prefix and a counter), renewed after fork."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> tuple[str, int]:
        """A new id; formatted as text later, on the writer thread."""
        return (self.prefix, next(self.counter))


_ids = _Ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.renew)


class CallRefused(Exception):
    """Raised by the transport instead of sending an LLM request that a gate (e.g. a hard budget) refused.

    It subclasses :class:`Exception` directly, not an httpx error, so SDKs do not retry it.
    """


class Capturer:
    """Decides what to capture and starts a `PendingCall` for it; shared by the sync and async transports."""

    def __init__(
        self,
        registry: Registry,
        sink: Callable[[PendingCall], None],
        *,
        hooks: Hooks | None = None,
        max_body_bytes: int,
        stream_usage: bool = False,
        on_begin: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.sink = sink
        self.hooks = hooks if hooks is not None else Hooks()
        """Its ``gates`` run before an LLM request leaves the process (one raising :class:`CallRefused` refuses
        it); its ``count_error`` counts what went wrong in here."""
        self.on_begin = on_begin
        """Called on the caller's thread before each captured call (the writer's ``start``: threads are started
        here, never from ``sink``, which may run in a garbage-collection finaliser)."""
        self.max_body_bytes = max_body_bytes
        self.stream_usage = stream_usage
        self.retries = RetryGrouper(_ids.next)
        """Which attempts are retries of one call (``call_id``/``attempt``); see :mod:`.retries`."""

    def begin(self, request: Any) -> tuple[PendingCall | None, Any]:
        """A `PendingCall` for an LLM request (else ``None``), and the request to send.

        Raises only :class:`CallRefused`, when a gate refuses the call (it is then recorded as failed).
        """
        try:
            url = request.url
            method = request.method
            host = url.host
            path = url.path
            route = self.registry.resolve(method, host, url.port, path)
            if route is None:
                return None, request
            if self.on_begin is not None:
                self.on_begin()
            try:
                body = request.content
            except Exception:  # a streaming upload not read into memory: nothing to scan
                body = None
            if self.stream_usage and body and route.kind == "chat" and route.family.name == "openai":
                request = _with_stream_usage(request, body)
            found = header_values(request.headers, _BEGIN_HEADERS)
            raw_retry = found.get(_RETRY_HEADER)
            retry = None if raw_retry is None else raw_retry.decode("ascii", "replace")
            mark = self.retries.assign(method, host, path, url, body, retry)  # call id and attempt (see retries.py)
            tags = current_tags.get()
            inbound = current_inbound.get()
            if inbound is not None:  # resolved here, on the caller's thread, while e.g. Flask's request is active
                inbound.resolve("user" not in tags)
            pending = PendingCall(
                route,
                method,
                host,
                path,
                body,
                time.time(),
                perf_counter(),
                mark.call_id,
                mark.number,
                tags,
                self.sink,
                self.max_body_bytes,
                inbound,
                current_trace.get(),
            )
            pending.credential = _credential(found, url)
            pending.retry_mark = mark
        except Exception as exc:
            self.failed(exc)
            return None, request
        for gate in self.hooks.gates:  # one read of the copy-on-write tuple: never skips or repeats a gate
            try:
                gate(pending)
            except CallRefused as refused:
                pending.finish(FAILED, refused)
                raise
            except Exception as exc:  # a broken check never blocks the call
                self.failed(exc)
        return pending, request

    def failed(self, exc: BaseException) -> None:
        logger.warning("llm_monitor_mw: capture skipped a request after an internal error: %r", exc)
        self.hooks.count_error(exc)


def _credential(found: dict[bytes, bytes], url: Any) -> bytes | None:
    """The raw API key header (or Gemini's ``key=`` query value) of a request, ``None`` without one."""
    for name in _KEY_HEADERS:
        value = found.get(name)
        if value:
            return value
    query = url.query
    if b"key=" in query:
        for pair in query.split(b"&"):
            if pair.startswith(b"key="):
                return pair[4:] or None
    return None


def _with_stream_usage(request: Any, body: bytes) -> Any:
    """Ask an OpenAI chat stream to report usage (``stream_options.include_usage``) unless the caller chose."""
    if _STREAM_OPTIONS in body or not any(flag in body for flag in _STREAM_TRUE) or not body.startswith(b"{"):
        return request
    new_body = b'{"stream_options":{"include_usage":true},' + body[1:]
    headers = request.headers.copy()
    headers["content-length"] = str(len(new_body))
    lib = library_of(request)
    return lib.Request(request.method, request.url, headers=headers, content=new_body, extensions=request.extensions)


# Error bodies the SDKs close unread before a retry: how much is drained on close so the record gets the
# provider's message. Only what is already arriving: a few reads, never past these bounds.
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 0.05
_CONTENT_LENGTH = frozenset({b"content-length"})


class TeeStream(*SYNC_STREAM_BASES):  # type: ignore[misc]
    """A response byte stream that yields the inner stream's raw chunks unchanged and feeds the capture.

    A stream the caller drops without closing is finished by ``__del__`` (or, if it is closed by a finaliser
    during a garbage collection, e.g. an SDK's stream generator being collected, by ``close``) as dropped, ending
    at the last chunk read; one still uncollected at exit is finished by ``open_calls``.
    """

    def __init__(self, inner: Any, pending: PendingCall) -> None:
        self._inner = inner
        self._pending = pending

    def __iter__(self) -> Iterator[bytes]:
        pending = self._pending
        feed = pending.feeder()
        clock = perf_counter
        try:
            for chunk in self._inner:
                pending.read_at = clock()
                feed(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.finish(BROKEN, exc)
            raise
        pending.finish(COMPLETE)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._pending.finish(DROPPED if in_collection() else ABANDONED)

    def __del__(self) -> None:
        # May run on any thread and during interpreter shutdown: finish() only notes times and appends to a deque.
        # The inner stream is left alone (closing it could take a lock the collected thread holds).
        pending = self._pending
        if not pending.done:
            with contextlib.suppress(Exception):  # late in shutdown, globals may be gone
                pending.finish(DROPPED)


class _ErrorTeeStream(TeeStream):
    """:class:`TeeStream` for a response with status >= 400: closed unread, it first drains a small body.

    The SDKs close a 429/5xx without reading it before they retry; the few bytes already arriving carry the
    provider's message. The drain is bounded by :data:`DRAIN_BYTES` and :data:`DRAIN_SECONDS` (the read timeout
    of httpcore-based transports is lowered to what is left, through the request's ``timeout`` extension, and the
    deadline is checked between chunks); what the caller sees does not change, it has closed the response.
    """

    def __init__(self, inner: Any, pending: PendingCall, extensions: Any) -> None:
        self._inner = inner
        self._pending = pending
        self._extensions = extensions

    def close(self) -> None:
        pending = self._pending
        if pending.done or pending.nbytes or in_collection() or not _small_body(pending.resp_headers):
            super().close()
            return
        complete = False
        try:
            with contextlib.suppress(Exception):  # a read error or timeout: keep what arrived, record as closed early
                complete = self._drain(pending)
        finally:
            try:
                self._inner.close()
            finally:
                pending.finish(COMPLETE if complete else ABANDONED)

    def _drain(self, pending: PendingCall) -> bool:
        deadline = perf_counter() + DRAIN_SECONDS
        ext = self._extensions
        had_timeout = isinstance(ext, dict) and "timeout" in ext
        saved = ext.get("timeout") if had_timeout else None
        if isinstance(ext, dict):
            ext["timeout"] = {**(saved if isinstance(saved, dict) else {}), "read": DRAIN_SECONDS}
        try:
            feed = pending.feeder()
            drained = 0
            for chunk in self._inner:
                feed(chunk)
                drained += len(chunk)
                if drained > DRAIN_BYTES or perf_counter() > deadline:
                    return False
            return True
        finally:
            if had_timeout:
                ext["timeout"] = saved
            elif isinstance(ext, dict):
                ext.pop("timeout", None)


def _small_body(headers: Any) -> bool:
    """Whether an unread body may be drained: no ``content-length`` (read with a deadline) or a small one."""
    if headers is None:
        return False
    raw = header_values(headers, _CONTENT_LENGTH).get(b"content-length")
    if raw is None:
        return True
    try:
        return int(raw) <= DRAIN_BYTES
    except ValueError:
        return False


class AsyncTeeStream(*ASYNC_STREAM_BASES):  # type: ignore[misc]
    """The async twin of :class:`TeeStream`.

    A response whose async generator asyncio closes after the caller dropped it (at garbage collection, or when
    ``asyncio.run`` ends) is recorded as dropped, ending at the last chunk read.
    """

    def __init__(self, inner: Any, pending: PendingCall) -> None:
        self._inner = inner
        self._pending = pending

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = self._pending
        feed = pending.feeder()
        clock = perf_counter
        try:
            async for chunk in self._inner:
                pending.read_at = clock()
                feed(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.finish(BROKEN, exc)
            raise
        pending.finish(COMPLETE)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._pending.finish(DROPPED if _dropped_async() else ABANDONED)

    def __del__(self) -> None:
        pending = self._pending
        if not pending.done:
            with contextlib.suppress(Exception):  # late in shutdown, globals may be gone
                pending.finish(DROPPED)


class _AsyncErrorTeeStream(AsyncTeeStream):
    """The async twin of :class:`_ErrorTeeStream` (the drain runs under an anyio/asyncio deadline)."""

    def __init__(self, inner: Any, pending: PendingCall, extensions: Any) -> None:
        self._inner = inner
        self._pending = pending  # the request's extensions are not needed: a cancel scope bounds the reads

    async def aclose(self) -> None:
        pending = self._pending
        if pending.done or pending.nbytes or _dropped_async() or not _small_body(pending.resp_headers):
            await super().aclose()
            return
        complete = False
        try:
            with contextlib.suppress(Exception):  # a read error or timeout: keep what arrived, record as closed early
                complete = await self._drain(pending)
        finally:
            try:
                await self._inner.aclose()
            finally:
                pending.finish(COMPLETE if complete else ABANDONED)

    async def _drain(self, pending: PendingCall) -> bool:
        feed = pending.feeder()
        drained = 0
        deadline = perf_counter() + DRAIN_SECONDS
        with _move_on_after(DRAIN_SECONDS):
            async for chunk in self._inner:
                feed(chunk)
                drained += len(chunk)
                if drained > DRAIN_BYTES or perf_counter() > deadline:
                    return False
            return True
        return False


def _move_on_after(seconds: float) -> Any:
    """A deadline scope for the running async library (anyio's, which also works under trio)."""
    try:
        import anyio
    except ImportError:  # pragma: no cover - httpx depends on anyio
        return asyncio.timeout(seconds)
    return anyio.move_on_after(seconds)


def _dropped_async() -> bool:
    return in_collection() or in_async_generator_finaliser()


def _attach(capturer: Capturer, pending: PendingCall, request: Any, response: Any, sync: bool) -> None:
    try:
        pending.attach(response.status_code, response.headers)
        pending.read_at = perf_counter()
        if response.status_code < 400:
            response.stream = (TeeStream if sync else AsyncTeeStream)(response.stream, pending)
        else:
            stream_type = _ErrorTeeStream if sync else _AsyncErrorTeeStream
            response.stream = stream_type(response.stream, pending, request.extensions)
    except Exception as exc:
        capturer.failed(exc)  # counted; the response passes through unrecorded
        if not isinstance(response.stream, TeeStream | AsyncTeeStream):
            forget_open_call(pending)  # nothing will finish it: not to be recorded at exit either


class MonitorTransport(*SYNC_TRANSPORT_BASES):  # type: ignore[misc]
    """An ``httpx``/``httpx2`` transport that records LLM calls and passes everything through unchanged.

    ``inner`` is the transport that really sends (default: the HTTP library's own ``HTTPTransport``, created on
    first use for whichever library the client belongs to), so proxies, retries and TLS settings stay yours.
    """

    def __init__(self, capturer: Capturer, inner: Any = None) -> None:
        self._capturer = capturer
        self._inner = inner
        self._defaults: dict[Any, Any] = {}

    def _inner_for(self, request: Any) -> Any:
        if self._inner is not None:
            return self._inner
        lib = library_of(request)
        transport = self._defaults.get(lib)
        if transport is None:
            transport = self._defaults[lib] = lib.HTTPTransport()
        return transport

    def handle_request(self, request: Any) -> Any:
        inner = self._inner_for(request)
        capturer = self._capturer
        pending, request = capturer.begin(request)
        if pending is None:
            return inner.handle_request(request)
        try:
            response = inner.handle_request(request)
        except BaseException as exc:
            pending.finish(FAILED, exc)
            raise
        _attach(capturer, pending, request, response, True)
        return response

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        for transport in self._defaults.values():
            transport.close()

    def __enter__(self) -> MonitorTransport:
        if self._inner is not None:
            self._inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        if self._inner is not None:
            self._inner.__exit__(*args)
        for transport in self._defaults.values():
            transport.close()


class AsyncMonitorTransport(*ASYNC_TRANSPORT_BASES):  # type: ignore[misc]
    """The async twin of :class:`MonitorTransport` (for ``httpx.AsyncClient``/``httpx2.AsyncClient``)."""

    def __init__(self, capturer: Capturer, inner: Any = None) -> None:
        self._capturer = capturer
        self._inner = inner
        self._defaults: dict[Any, Any] = {}

    def _inner_for(self, request: Any) -> Any:
        if self._inner is not None:
            return self._inner
        lib = library_of(request)
        transport = self._defaults.get(lib)
        if transport is None:
            transport = self._defaults[lib] = lib.AsyncHTTPTransport()
        return transport

    @property
    def retries(self) -> RetryGrouper:
        """How this transport groups attempts into calls (see :mod:`.retries`)."""
        return self._capturer.retries

    async def handle_async_request(self, request: Any) -> Any:
        inner = self._inner_for(request)
        capturer = self._capturer
        pending, request = capturer.begin(request)
        if pending is None:
            return await inner.handle_async_request(request)
        try:
            response = await inner.handle_async_request(request)
        except BaseException as exc:
            pending.finish(FAILED, exc)
            raise
        _attach(capturer, pending, request, response, False)
        return response

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
        for transport in self._defaults.values():
            await transport.aclose()

    async def __aenter__(self) -> AsyncMonitorTransport:
        if self._inner is not None:
            await self._inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        if self._inner is not None:
            await self._inner.__aexit__(*args)
        for transport in self._defaults.values():
            await transport.aclose()
