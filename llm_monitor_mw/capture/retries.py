"""Which HTTP attempts are retries of one logical call: they share a ``call_id`` and count ``attempt`` 1, 2, 3 ….

One record is written per HTTP attempt; this module only decides the ``(call_id, attempt)`` each one gets, on the
caller's path, in a few hundred nanoseconds and without hashing anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

RETRY_WINDOW_S = 60.0
"""How long after a failed attempt an identical request still counts as its retry (seconds)."""

# 408 (request timeout), 429 (rate limited) and every 5xx (500-504, Anthropic's 529 "overloaded", …): the statuses
# SDK retry loops retry (google-genai's defaults are 408, 429, 500, 502, 503, 504; litellm and tenacity loops
# retry these and connection errors).
_RETRIED_BELOW_500 = frozenset({408, 429})

CallId = tuple[str, int]


class Attempt:
    """What is remembered of the last attempt a context made (the only entry per context).

    The attempt's `PendingCall` holds it too, and tells it how the attempt ended: :meth:`answered` when the
    response headers arrive, :meth:`raised` when no response came (connection error, timeout, a refusing gate).
    Only references are kept (strings and bytes the request already had), never a copy or a hash.
    """

    __slots__ = ("body", "call_id", "clock", "failed_at", "host", "method", "number", "path", "url")

    def __init__(
        self,
        method: str,
        host: str,
        path: str,
        url: Any,
        body: bytes | None,
        call_id: CallId,
        number: int,
        clock: Callable[[], float],
    ) -> None:
        self.method = method
        self.host = host
        self.path = path
        self.url = url
        self.body = body
        self.call_id = call_id
        self.number = number
        self.clock = clock
        self.failed_at: float | None = None  # when it failed in a way SDKs retry; None: not (or not yet) failed

    def answered(self, status: int) -> None:
        """The response headers arrived with ``status``: note a retryable failure, else let go of the body."""
        if status >= 500 or status in _RETRIED_BELOW_500:
            self.failed_at = self.clock()
        else:
            self.body = None  # cannot be retried: no reason to keep the request alive

    def raised(self) -> None:
        """No response: the attempt raised (connection error, timeout) or a gate refused it."""
        self.failed_at = self.clock()


class RetryGrouper:
    """Gives each attempt its ``(call_id, attempt)``; one per `Capturer`.

    The rule:

    - **The SDK says so.** A request with ``x-stainless-retry-count: N`` (the OpenAI and Anthropic SDKs), ``N > 0``,
      continues the call of the last attempt this context made to the same host and path.
    - **Otherwise (and for ``N = 0``, which an outer retry loop such as litellm's or tenacity's may resend): an
      identical request after a failure.** The same context sends the same method, host, port, path, query and
      request body again within :data:`RETRY_WINDOW_S` of the moment its previous attempt failed: status 408, 429 or
      5xx (529 included), or no response at all (connection error, timeout, a refusing gate). That covers litellm's
      ``num_retries``, google-genai's ``HttpRetryOptions``, tenacity around any SDK, and hand-written loops.
    - Anything else starts a new call: an identical request after a *successful* one, one past the window, one with
      a different body or URL.

    "The same context" is a :class:`~contextvars.ContextVar`: one thread, or one asyncio task (tasks start with a copy
    of their parent's context, and an SDK's retry loop runs inside the task that made the call). Matching consumes
    the failure, so two tasks that inherited the same failed attempt cannot both continue it.

    Cost on the caller's path: one context-variable read and write and one small object per attempt; the bodies are
    compared (``bytes ==``, a ``memcmp``) only when the previous attempt failed and the method and URL match. Memory:
    one entry per context, replaced by the next attempt; a body is kept only while its attempt may still be retried
    (a successful answer lets go of it), so at most one failed request body per context stays referenced until
    that context's next call.
    """

    def __init__(
        self,
        new_id: Callable[[], CallId],
        *,
        window: float = RETRY_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.new_id = new_id
        self.window = window
        self.clock = clock
        """Seconds, monotonic; replaceable (tests step it instead of sleeping)."""
        # One variable per grouper (not per module), so two monitors never continue each other's calls.
        self._last: ContextVar[Attempt | None] = ContextVar("llm_monitor_mw_last_attempt", default=None)

    def last(self) -> Attempt | None:
        """This context's last attempt: what a caller that serves one client in several contexts (the proxy: one
        per inbound request) carries to the client's next request with :meth:`resume`."""
        return self._last.get()

    def resume(self, attempt: Attempt | None) -> None:
        """Make ``attempt`` (from :meth:`last` in another context) this context's last attempt."""
        self._last.set(attempt)

    def assign(self, method: str, host: str, path: str, url: Any, body: bytes | None, retry: str | None) -> Attempt:
        """The attempt a request starts (its ``call_id`` and ``number``); remembered as this context's last.

        ``url`` needs ``port`` and ``query``; ``retry`` is the ``x-stainless-retry-count`` header's value, if sent.
        """
        last = self._last.get()
        if last is None:
            call_id, number = self.new_id(), 1
        elif retry is not None and retry != "0":
            if last.host == host and last.path == path:
                call_id, number = last.call_id, last.number + 1
            else:
                call_id, number = self.new_id(), 1
        elif last.failed_at is not None and self._repeats(last, method, host, path, url, body):
            call_id, number = last.call_id, last.number + 1
            last.failed_at = None  # consumed: a second context holding the same entry starts its own call
            last.body = None
        else:
            call_id, number = self.new_id(), 1
        attempt = Attempt(method, host, path, url, body, call_id, number, self.clock)
        self._last.set(attempt)
        return attempt

    def _repeats(self, last: Attempt, method: str, host: str, path: str, url: Any, body: bytes | None) -> bool:
        """Whether a request repeats ``last`` (which failed) within the window."""
        if last.path != path or last.host != host or last.method != method or body is None:
            return False
        if self.clock() - last.failed_at > self.window:  # type: ignore[operator]
            return False
        previous = last.url
        return previous.port == url.port and previous.query == url.query and last.body == body
