"""Health: ``GET {mount}/health`` answers JSON, with HTTP 503 when this process cannot record calls.

Unhealthy (503): the SQLite file cannot be opened, read or locked for writing, or the writer is failing (writes
failed since its last successful one, or its queue is full so records are being dropped). A file busy with another
process's write is healthy: someone is writing to it.

Degraded (still 200), with the reason in ``problems``:

* the dashboard's (and ``/metrics``') own reads fail while recording works (``database.read_path_ok`` false and
  ``database.read_path_error`` naming the read: a dropped or damaged roll-up or counter table, a corrupt page).
  Not 503, because this endpoint is often the host app's load-balancer or liveness check: a 503 would take the
  instance out of service or restart it, stopping the calls it makes and their recording, which still works, and
  a restart repairs no table. The operator needs to know (an alert on ``status != "ok"``), not the host to stop.
* an opt-in provider check (``health_checks=[url, ...]``) failed: an unreachable provider is not this instance's
  fault, and taking every instance out of a load balancer would not help.

The database check answers within :data:`DATABASE_TIMEOUT_S` whatever the database does: it runs on a thread of
its own (one connection), at most one at a time, and a check that has not finished by then is reported as the
database not answering (unhealthy, 503: a server that does not answer, behind a dropped route or overloaded, would
otherwise hold every health check for the connect timeout and make a load balancer's check time out with no
reason given). The next request waits for the same check, so checks never pile up behind a server that hangs.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._version import __version__
from ..store.dbfile import iso
from ..store.probe import DatabaseProbe, probe

if TYPE_CHECKING:
    from ..store import Store
    from ..store.engine import Engine

DATABASE_TIMEOUT_S = 2.0
"""Longest wait of ``/health`` for the database check (below the usual 5 s load-balancer timeouts)."""
PROVIDER_TIMEOUT_S = 2.0
"""Time limit of each opt-in provider reachability check (connect, send and response headers)."""


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """One provider reachability check: any HTTP answer below 500 counts as reachable."""

    url: str
    reachable: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None


def validate_urls(urls: Sequence[str]) -> tuple[str, ...]:
    """``urls`` as a tuple, after checking that each is an absolute ``http``/``https`` URL."""
    if isinstance(urls, str):
        raise TypeError("health_checks must be a list of URLs, not one string")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"health_checks: {url!r} is not an http(s) URL")
    return tuple(urls)


async def check_provider(url: str, timeout: float = PROVIDER_TIMEOUT_S) -> ProviderCheck:
    """``GET url`` through a bare httpx transport (never an instrumented client, so nothing gets recorded)."""
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    request = httpx.Request("GET", url, extensions={"timeout": limits})
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout), httpx.AsyncHTTPTransport() as transport:
            response = await transport.handle_async_request(request)
            await response.aclose()
    except Exception as exc:  # any failure to get an answer means "unreachable"
        return ProviderCheck(url, False, None, None, f"{type(exc).__name__}: {exc}".strip(": "))
    latency = round((time.perf_counter() - start) * 1000, 1)
    ok = response.status_code < 500
    return ProviderCheck(url, ok, response.status_code, latency, None if ok else f"HTTP {response.status_code}")


class WriterWatch:
    """Whether the writer is failing: writes failed since the last successful one (per process, sticky)."""

    def __init__(self) -> None:
        self._written = 0
        self._failed = 0
        self._failing = False
        self._lock = threading.Lock()

    def failing(self, written: int, failed: int) -> bool:
        """Update with the writer's current counters and answer."""
        with self._lock:
            if written > self._written:
                self._failing = False
            elif failed > self._failed:
                self._failing = True
            self._written, self._failed = written, failed
            return self._failing


class ProbeThread:
    """Runs the database check on one daemon thread of its own (so one connection, and never the thread pool of
    the host or of the dashboard), at most one check at a time: :meth:`submit` while one runs returns that one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._pending: Future[DatabaseProbe] | None = None
        self._requests: queue.SimpleQueue[tuple[Future[DatabaseProbe], bool]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, *, create: bool) -> Future[DatabaseProbe]:
        """The running check, or a new one (``create``: see :func:`~..store.probe.probe`)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and check are not ours
                self._pending, self._thread, self._pid = None, None, os.getpid()
                self._requests = queue.SimpleQueue()
            if self._pending is not None and not self._pending.done():
                return self._pending
            future: Future[DatabaseProbe] = Future()
            self._pending = future
            self._requests.put((future, create))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, args=(self._requests,), daemon=True)
                self._thread.name = "llm-monitor-health"
                self._thread.start()
            return future

    def _run(self, requests: queue.SimpleQueue[tuple[Future[DatabaseProbe], bool]]) -> None:
        while True:
            future, create = requests.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(probe(self.engine, create=create))
            except BaseException as exc:  # probe reports failures; anything else is the endpoint's to show
                future.set_exception(exc)


def not_answering(timeout: float) -> DatabaseProbe:
    """What the check reports when the database did not answer within ``timeout`` seconds."""
    return DatabaseProbe(
        reachable=False, writable=None, busy=False, error=f"no answer within {timeout:g} s (slow or unreachable)"
    )


def health_endpoint(
    store: Store, provider_urls: Sequence[str] = (), *, database_timeout: float = DATABASE_TIMEOUT_S
) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /health`` handler for ``store`` (provider checks run concurrently, each within its timeout; the
    database check within ``database_timeout``)."""
    urls = validate_urls(provider_urls)
    watch = WriterWatch()
    checks = ProbeThread(store.engine)
    opened = False  # until the file has been opened once, the first check may create it (a store not yet used)

    async def check_database() -> tuple[DatabaseProbe, bool]:
        """The check's finding, and whether it finished in time."""
        running = asyncio.wrap_future(checks.submit(create=not opened))
        try:
            return await asyncio.wait_for(asyncio.shield(running), database_timeout), True
        except TimeoutError:
            return not_answering(database_timeout), False

    async def health(request: Request) -> Response:
        nonlocal opened
        (db, answered), providers = await asyncio.gather(
            check_database(), asyncio.gather(*(check_provider(u) for u in urls))
        )
        opened = opened or db.reachable
        stats = store.stats()
        failing = watch.failing(stats["written"], stats["failed"])
        queue_full = stats["queued"] >= store.max_queue
        problems = []
        if not answered:
            problems.append(f"database not answering within {database_timeout:g} s")
        elif not db.reachable:
            problems.append("database unreachable")
        elif db.writable is False:
            problems.append("database not writable")
        if failing:
            problems.append("writes are failing")
        if queue_full:
            problems.append("writer queue full: records are being dropped")
        unreachable = [p.url for p in providers if not p.reachable]
        reads_failing = db.reachable and db.read_path_ok is False
        status = "unhealthy" if problems else "degraded" if unreachable or reads_failing else "ok"
        if reads_failing:
            problems.append(f"dashboard reads failing: {db.read_path_error}")
        problems.extend(f"provider unreachable: {url}" for url in unreachable)
        body: dict[str, Any] = {
            "status": status,
            "version": __version__,
            "pid": os.getpid(),
            "database": asdict(db),
            "writer": {
                "failing": failing,
                "queue_depth": stats["queued"],
                "queue_limit": store.max_queue,
                "written": stats["written"],
                "dropped": stats["dropped"],
                "failed_writes": stats["failed"],
                "internal_errors": stats["internal_errors"],
                "last_write_at": iso(stats["last_write_at"]),
            },
            "problems": problems,
        }
        if urls:
            body["providers"] = [asdict(p) for p in providers]
        return JSONResponse(
            body, status_code=503 if status == "unhealthy" else 200, headers={"Cache-Control": "no-store"}
        )

    return health
