"""Attempts still open, so that none is lost when the caller never closes its response.

A response the caller drops without closing is finished by its stream's finaliser when it is garbage-collected;
one still unreachable-but-uncollected (or still being read by a daemon thread) at interpreter exit is finished
here, by a hook that runs just before the writers' final flush. Both record the time of the last read, not the
time of collection or exit.

Everything in here may run in a finaliser, on any thread, or during interpreter shutdown: it only adds to and
removes from a set and reads a couple of globals. Nothing blocks, nothing starts a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from threading import get_ident
from typing import Any, Protocol


class OpenCall(Protocol):
    """What this module needs of an attempt (a ``PendingCall``), without importing it back."""

    done: bool

    def finish(self, state: str, exc: BaseException | None = None) -> None: ...


# End states of an attempt the caller never closed (the others are in ``pending``): finished by its stream's
# finaliser, or at interpreter exit.
DROPPED, EXITED = "dropped", "exited"

_open: set[OpenCall] = set()
add = _open.add
"""Register an attempt when it starts (a set add: atomic under the GIL, tens of nanoseconds)."""
discard = _open.discard
"""Forget an attempt once it is finished."""

# The thread running a garbage collection right now, if any: a response closed during a collection is closed by a
# finaliser (e.g. the openai/anthropic SDK's stream generator being collected), never by the caller's own code.
_collecting: int | None = None


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _collecting
    _collecting = get_ident() if phase == "start" else None


def in_collection() -> bool:
    """Whether this thread is inside a garbage collection (so the code running is a finaliser)."""
    return _collecting is not None and _collecting == get_ident()


async def _agen() -> Any:  # pragma: no cover - never iterated; only its aclose() type is taken
    yield None


_gen = _agen()
_ATHROW = type(_gen.aclose())
del _gen


def in_async_generator_finaliser() -> bool:
    """Whether the current asyncio task only closes an async generator the caller dropped.

    asyncio finishes a garbage-collected async generator (and, in ``loop.shutdown_asyncgens``, every one still
    open when ``asyncio.run`` ends) in a task of its own whose coroutine is the generator's ``aclose()``. A
    response closed from there was dropped by the caller, not closed by it.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop (e.g. trio): cannot tell
        return False
    return task is not None and type(task.get_coro()) is _ATHROW


def finish_all_at_exit() -> None:
    """Finish every attempt still open as cut short by the exit (a ``before_exit_flush`` hook; never blocks)."""
    for pending in _open.copy():  # a copy made in one step: finalisers and daemon threads may still finish some
        with contextlib.suppress(Exception):  # finish never raises by contract; nothing may stop the exit
            pending.finish(EXITED)


def _after_fork_in_child() -> None:
    """The parent records its open calls; the child's copies must never be recorded (by a finaliser or at exit)."""
    for pending in _open:
        pending.done = True
    _open.clear()


gc.callbacks.append(_on_gc)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
