"""The background writer: a bounded queue drained in batches into SQLite on one thread.

``submit`` is the only thing the caller's path touches: a length check and a ``deque.append`` (both atomic under
the GIL). On overflow the item is dropped and counted, never blocking and never growing without bound. The
writer thread turns queued items into rows with the ``prepare`` callable it was given (parsing and pricing happen
there), inserts them in one ``BEGIN IMMEDIATE`` transaction per batch, and retries while another process holds
the write lock.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..record import CallRecord
from .database import Database
from .schema import CALL_COLUMNS, CALLS

logger = logging.getLogger("llm_monitor_mw")

_INSERT = f"INSERT INTO {CALLS} ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"


def record_row(record: CallRecord) -> tuple[Any, ...]:
    """The row tuple for ``record``, in :data:`CALL_COLUMNS` order."""
    return (
        record.started_at,
        record.provider,
        record.operation,
        record.endpoint,
        record.method,
        record.host,
        record.call_id,
        record.attempt,
        record.request_model,
        record.response_model,
        record.response_model or record.request_model,
        record.status_code,
        1 if record.ok else 0,
        record.error_type,
        record.error,
        1 if record.streamed else 0,
        record.input_tokens,
        record.output_tokens,
        record.total_tokens,
        record.cached_tokens,
        record.cache_creation_tokens,
        record.reasoning_tokens,
        record.cost_usd,
        record.duration_ms,
        record.ttft_ms,
        record.ttlt_ms,
        record.output_tokens_per_s,
        record.finish_reason,
        record.request_id,
        record.ratelimit_remaining_requests,
        record.ratelimit_remaining_tokens,
        record.retry_after_s,
        record.response_bytes,
        json.dumps(record.tags, separators=(",", ":")) if record.tags else None,
        record.request_content,
        record.response_content,
        record.route,
        record.user,
        record.inbound_method,
        record.inbound_request_id,
    )


def insert_records(db: Database, records: Sequence[CallRecord]) -> None:
    """Insert ``records`` in one transaction (retried while the database is busy)."""
    rows = [record_row(r) for r in records]
    db.write(lambda conn: conn.executemany(_INSERT, rows))


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the writer, for the API and health checks."""

    queued: int
    written: int
    dropped: int
    failed: int
    last_write_at: float | None


class _Flush:
    """A marker put in the queue by :meth:`Writer.flush`; set once everything before it is written."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class Writer:
    """Batches queued items into the ``calls`` table on a daemon thread."""

    def __init__(
        self,
        db: Database,
        prepare: Callable[[Any], CallRecord],
        *,
        max_queue: int = 100_000,
        batch_size: int = 1000,
        interval: float = 0.25,
    ) -> None:
        self.db = db
        self.prepare = prepare
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_write_at: float | None = None
        _register_exit_flush(self)

    # ---- caller's path -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread in this process if it is not running (cheap when it is).

        Called on the caller's thread when a call begins (``Capturer.begin``), never from :meth:`submit`: a
        submission may come from a garbage-collection finaliser, and a thread started there during interpreter
        shutdown can hang the exit.
        """
        if self._thread is None or self._pid != os.getpid():
            self._start()

    def submit(self, item: Any) -> bool:
        """Queue ``item``; ``False`` (and counted as dropped) when the queue is full or the writer closed.

        Never starts a thread (see :meth:`start`); what is queued while no thread runs is written by the next
        :meth:`flush` or at exit.
        """
        if len(self._queue) >= self.max_queue or self._closed:
            self.dropped += 1
            return False
        self._queue.append(item)
        return True

    # ---- control -------------------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued before this call is on disk; ``False`` on timeout."""
        if self._thread is None or self._pid != os.getpid():
            if not self._queue:
                return True  # nothing was ever submitted in this process
            self._start()
        elif not self._thread.is_alive():
            if self._closed:
                return not self._queue
            self._start()
        # Always go through the queue, even when it looks empty: the writer may hold a batch it has popped but
        # not yet committed, and the marker is released only after that batch.
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        return marker.event.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, then stop the thread. Later submissions are dropped (and counted)."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self) -> WriterStats:
        return WriterStats(
            queued=sum(1 for item in list(self._queue) if not isinstance(item, _Flush)),
            written=self.written,
            dropped=self.dropped,
            failed=self.failed,
            last_write_at=self.last_write_at,
        )

    # ---- writer thread -------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._thread is not None and self._pid == pid and self._thread.is_alive():
                return
            if self._pid != pid:  # forked without the at-fork hook having run (it always runs on POSIX)
                self._after_fork()
            self._thread = threading.Thread(target=self._run, name="llm-monitor-writer", daemon=True)
            self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue, thread and counters are not ours."""
        self._queue = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        self._pid = os.getpid()
        self.written = self.dropped = self.failed = 0
        self.last_write_at = None

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            while queue:
                self._drain_batch(queue)
            if self._closed and not queue:
                return

    def _drain_batch(self, queue: deque[Any]) -> None:
        records: list[CallRecord] = []
        markers: list[_Flush] = []
        while queue and len(records) < self.batch_size:
            item = queue.popleft()
            if isinstance(item, _Flush):
                markers.append(item)
                break  # write what came before the marker, then release it
            try:
                records.append(self.prepare(item))
            except Exception:
                self.failed += 1
                logger.exception("llm_monitor_mw: could not build a call record")
        if records:
            self._write(records)
        for marker in markers:
            marker.event.set()

    def _write(self, records: list[CallRecord]) -> None:
        try:
            insert_records(self.db, records)
        except Exception:
            self.failed += len(records)
            logger.exception("llm_monitor_mw: could not write %d call record(s) to %s", len(records), self.db.path)
        else:
            self.written += len(records)
            self.last_write_at = time.time()


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()
_exit_hooks: list[Callable[[], None]] = []


def _register_exit_flush(writer: Writer) -> None:
    _writers.add(writer)


def _reset_after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def before_exit_flush(hook: Callable[[], None]) -> None:
    """Run ``hook()`` at interpreter exit before the writers' final flush (e.g. to finish abandoned streams, so
    their records are in that flush). Hooks must be quick and must not block; one that raises is logged."""
    _exit_hooks.append(hook)


@atexit.register
def _flush_all_at_exit() -> None:
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:  # pragma: no cover - best effort at shutdown
            logger.exception("llm_monitor_mw: exit hook %r failed", hook)
    for writer in list(_writers):
        try:
            writer.close(timeout=5.0)
        except Exception:  # pragma: no cover - best effort at shutdown
            logger.exception("llm_monitor_mw: flush at exit failed")
