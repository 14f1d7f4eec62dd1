"""Context carried from the code that makes a call to the record of that call.

Built on :mod:`contextvars`, so values follow the code into ``asyncio`` tasks and into
``run_in_threadpool``/``asyncio.to_thread`` (both copy the context), and never leak between threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_EMPTY: dict[str, str] = {}
current_tags: ContextVar[dict[str, str]] = ContextVar("llm_monitor_mw_tags", default=_EMPTY)


@contextmanager
def tags(**values: object) -> Iterator[dict[str, str]]:
    """Attach tags to every LLM call made inside the block; nested blocks add to (and may override) outer ones."""
    merged = {**current_tags.get(), **{str(k): str(v) for k, v in values.items()}}
    token = current_tags.set(merged)
    try:
        yield merged
    finally:
        current_tags.reset(token)
