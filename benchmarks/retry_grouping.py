#!/usr/bin/env python3
"""What grouping retries costs the caller: ``RetryGrouper.assign`` plus the attempt's end signal, per call.

Cases: a context's first call, a call after a successful one (the common case: nothing to compare), a call after a
failure to another URL, and a real retry (same URL, a 1 KiB and a 1 MiB body compared with ``==``). The baseline is
what assigning a call id cost before (one id from the counter). Prints a table of ns per call (best of 5 runs).

    python benchmarks/retry_grouping.py
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any

import httpx

from llm_monitor_mw.capture.retries import RetryGrouper
from llm_monitor_mw.capture.transport import _ids

N = 200_000
URL = httpx.URL("https://api.anthropic.com/v1/messages")
OTHER = httpx.URL("https://api.anthropic.com/v1/messages/count_tokens")
HOST, PATH = URL.host, URL.path


def body(size: int) -> bytes:
    head = b'{"model":"claude-sonnet-4-5","max_tokens":512,"messages":[{"role":"user","content":"'
    return head + b"x" * max(0, size - len(head) - 5) + b'"}]}'


def per_call(step: Callable[[], Any], n: int = N) -> float:
    """Best-of-5 nanoseconds per ``step()`` (each run in a fresh context, as a new thread or task would be)."""
    best = float("inf")
    for _ in range(5):
        ctx = contextvars.copy_context()

        def run() -> float:
            start = time.perf_counter_ns()
            for _ in range(n):
                step()
            return (time.perf_counter_ns() - start) / n

        best = min(best, ctx.run(run))
    return best


def main() -> None:
    small, big = body(1024), body(1024 * 1024)
    big_copy = bytes(bytearray(big))  # equal bytes, another object: a real memcmp, as with an SDK's rebuilt body
    rows: list[tuple[str, float]] = [("baseline: a new call id (before grouping)", per_call(_ids.next))]

    fresh = RetryGrouper(_ids.next)

    def first_call() -> None:
        fresh._last.set(None)
        fresh.assign("POST", HOST, PATH, URL, small, None)

    rows.append(("first call in a context", per_call(first_call)))

    grouper = RetryGrouper(_ids.next)

    def after_success() -> None:
        grouper.assign("POST", HOST, PATH, URL, small, None).answered(200)

    rows.append(("after a successful call (+ answered(200))", per_call(after_success)))

    urls = (URL, OTHER)
    flip = [0]

    def after_failure_elsewhere() -> None:
        flip[0] ^= 1
        url = urls[flip[0]]
        grouper.assign("POST", HOST, url.path, url, small, None).answered(503)

    rows.append(("after a failure to another URL (+ answered(503))", per_call(after_failure_elsewhere)))

    for label, a, b in (("1 KiB", small, bytes(bytearray(small))), ("1 MiB", big, big_copy)):
        bodies = (a, b)

        def retry(bodies: tuple[bytes, bytes] = bodies) -> None:
            flip[0] ^= 1
            grouper.assign("POST", HOST, PATH, URL, bodies[flip[0]], None).answered(503)

        n = N if label == "1 KiB" else 2_000
        rows.append((f"a retry: same URL, {label} body compared (+ answered(503))", per_call(retry, n)))

    def stainless() -> None:
        grouper.assign("POST", HOST, PATH, URL, small, "1").answered(429)

    rows.append(("stainless header retry (+ answered(429))", per_call(stainless)))

    width = max(len(label) for label, _ in rows)
    print(f"{'case':<{width}}  ns/call")
    print(f"{'-' * width}  -------")
    for label, ns in rows:
        print(f"{label:<{width}}  {ns:7.0f}")


if __name__ == "__main__":
    main()
