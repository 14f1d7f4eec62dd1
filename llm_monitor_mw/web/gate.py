"""Bounded concurrency for the monitoring app's work, so that the dashboard never starves the host.

Starlette runs plain-function endpoints in anyio's default thread pool: 40 tokens shared with the host app's own
sync endpoints (FastAPI's ``def`` routes, ``run_in_threadpool``). Twenty dashboard clients would take half of them,
and their SQL and rendering compete with the host for the GIL. A :class:`Gate` gives the monitoring app its own
slots instead: at most ``capacity`` requests run at once, their sync work in threads counted by the gate's own
limiter (never the default one); a request that finds every slot taken waits at most ``queue_timeout`` seconds
(and only if fewer than ``max_waiting`` already wait), then gets ``503`` with ``Retry-After: 1``.

A slot is held until the response is sent, so a streamed export counts against the gate for its whole length.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from .responses import JSONAnswer

Handler = Callable[[Request], Response] | Callable[[Request], Awaitable[Response]]
Kind = Literal["html", "json"]

RETRY_AFTER_S = 1
BUSY_MESSAGE = "The monitoring app is busy; try again in a moment."
_BUSY_HTML = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Busy</title></head>'
    f"<body><h1>503: busy</h1><p>{BUSY_MESSAGE}</p></body></html>\n"
)


def default_capacity() -> int:
    """Slots for dashboard work: the CPUs this process may use, at least 2."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(2, cpus)


def check_limits(concurrency: int | None, queue_timeout: float) -> None:
    """Raise ``ValueError`` unless ``concurrency`` is ``None`` or a positive int and ``queue_timeout`` >= 0 s."""
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError("concurrency must be a positive integer (or None: the number of CPUs, at least 2)")
    if (
        isinstance(queue_timeout, bool)
        or not isinstance(queue_timeout, int | float)
        or not math.isfinite(queue_timeout)
        or queue_timeout < 0
    ):
        raise ValueError("queue_timeout must be a finite number of seconds >= 0")


@dataclass(slots=True)
class _State:
    """One event loop's slots (a gate may serve several loops: test clients, a WSGI bridge per process)."""

    slots: anyio.Semaphore
    threads: anyio.CapacityLimiter
    waiting: int = 0


class Gate:
    """At most ``capacity`` requests at once, per event loop; see the module docstring."""

    def __init__(
        self,
        capacity: int | None = None,
        *,
        queue_timeout: float = 1.0,
        max_waiting: int | None = None,
        name: str = "dashboard",
    ) -> None:
        check_limits(capacity, queue_timeout)
        self.capacity = default_capacity() if capacity is None else capacity
        self.queue_timeout = float(queue_timeout)
        self.max_waiting = 8 * self.capacity if max_waiting is None else max_waiting
        self.name = name
        self.rejected = 0
        """Requests answered 503 because every slot was taken (all loops)."""
        self._state: RunVar[_State] = RunVar(f"llm_monitor_mw_gate_{name}_{id(self)}")

    def __repr__(self) -> str:
        return f"Gate({self.name!r}, capacity={self.capacity}, queue_timeout={self.queue_timeout})"

    def _current(self) -> _State:
        state = self._state.get(None)
        if state is None:
            state = _State(anyio.Semaphore(self.capacity), anyio.CapacityLimiter(self.capacity))
            self._state.set(state)
        return state

    async def acquire(self) -> anyio.Semaphore | None:
        """Take a slot (waiting at most ``queue_timeout``): the semaphore to release it to, ``None`` when none
        came free. The caller releases to that object, not through this loop's state: the release may run when
        the request's coroutine is closed outside any event loop (garbage collection)."""
        state = self._current()
        slots = state.slots
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            pass
        else:
            return slots
        if state.waiting >= self.max_waiting or self.queue_timeout == 0:
            self.rejected += 1
            return None
        state.waiting += 1
        try:
            with anyio.move_on_after(self.queue_timeout):
                await slots.acquire()
                return slots
        finally:
            state.waiting -= 1
        self.rejected += 1
        return None

    async def run_sync(self, fn: Callable[[Request], Response], request: Request) -> Response:
        """``fn(request)`` in a worker thread counted by this gate's limiter (call while holding a slot)."""
        return await anyio.to_thread.run_sync(fn, request, limiter=self._current().threads)

    def endpoint(self, handler: Handler, kind: Kind = "html") -> GatedEndpoint:
        """``handler`` (a sync or async ``request -> response`` function) as an ASGI app behind this gate."""
        return GatedEndpoint(self, handler, kind)


def busy_response(kind: Kind) -> Response:
    """The ``503`` a saturated gate answers: a tiny page or ``{"error": ...}``, with ``Retry-After``."""
    headers = {"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"}
    if kind == "json":
        return JSONAnswer({"error": BUSY_MESSAGE}, status_code=503, headers=headers)
    return HTMLResponse(_BUSY_HTML, status_code=503, headers=headers)


class GatedEndpoint:
    """An ASGI app (so a Starlette ``Route`` passes it the raw scope) running one handler behind a :class:`Gate`."""

    def __init__(self, gate: Gate, handler: Handler, kind: Kind) -> None:
        self.gate = gate
        self.handler = handler
        self.kind = kind
        self._is_async = inspect.iscoroutinefunction(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = await self.gate.acquire()
        if slot is None:
            await busy_response(self.kind)(scope, receive, send)
            return
        try:
            request = Request(scope, receive, send)
            if self._is_async:
                response = await self.handler(request)  # type: ignore[misc]
            else:
                response = await self.gate.run_sync(self.handler, request)  # type: ignore[arg-type]
            await response(scope, receive, send)
        finally:
            slot.release()
