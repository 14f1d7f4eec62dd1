"""Store: everything that knows SQL. Web, alerts, OpenTelemetry and the CLI receive a :class:`Store`, never ``Monitor``.

The store knows the engines (a SQLite file or a PostgreSQL database, :mod:`.engine`) and the
:class:`~llm_monitor_mw.record.CallRecord` shape; nothing of httpx or HTTP serving. :class:`Store` is the whole
surface the other layers may use: the writer (``submit``/``flush``), the dashboard and API reads, the ``/metrics``
counters, retention and the alert state tables, all built on one engine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..record import CallRecord
from .counters import Counters
from .database import Database
from .engine import Engine, open_engine
from .read import Analytics, Queries, Traces
from .retention import Retention
from .writer import Writer, WriterStats

if TYPE_CHECKING:
    from ..hooks import Hooks
    from .alerts import AlertStore
    from .reprice import RepriceResult

__all__ = [
    "MAX_INSTANCE_LENGTH",
    "Database",
    "Store",
    "Writer",
    "WriterStats",
    "check_instance",
    "default_instance",
    "open_engine",
]

MAX_INSTANCE_LENGTH = 200
"""Longest instance name accepted (it is stored on every call row)."""


def default_instance() -> str:
    """``<hostname>:<process group>``: one name for all the worker processes of one server on one host (they
    share a process group: gunicorn's and uvicorn's workers are forked by their master)."""
    group = os.getpgrp() if hasattr(os, "getpgrp") else os.getpid()
    return f"{socket.gethostname()}:{group}"


def check_instance(instance: str | None) -> str:
    """``instance``, validated (non-empty, at most :data:`MAX_INSTANCE_LENGTH` characters, printable), or
    :func:`default_instance` for ``None``."""
    if instance is None:
        return default_instance()
    if not isinstance(instance, str):
        raise TypeError(f"instance must be a string, not {type(instance).__name__}")
    if not instance or len(instance) > MAX_INSTANCE_LENGTH or not instance.isprintable():
        raise ValueError(f"instance must be 1 to {MAX_INSTANCE_LENGTH} printable characters, got {instance!r}")
    return instance


def _as_record(item: Any) -> CallRecord:
    """The default ``prepare``: a store fed without capture receives finished records."""
    return item


class Store:
    """The facade over one engine: write, read and maintenance.

    Args:
        engine: the database (see :func:`open_engine`).
        prepare: turns a queued item into a :class:`CallRecord` on the writer thread (the monitor prices the
            call and runs the listeners there); by default items are records already.
        instance: this process's instance name, stamped on every row it writes (see :func:`check_instance`).
        hooks: where the internal-error counter shown by :meth:`stats` lives.
        max_queue, batch_size, flush_interval: the writer's bounded queue and batching.
        retention_days: delete calls older than this many days (see :meth:`Retention.start`); ``None`` keeps all.
    """

    def __init__(
        self,
        engine: Engine,
        prepare: Callable[[Any], CallRecord] | None = None,
        *,
        instance: str | None = None,
        hooks: Hooks | None = None,
        max_queue: int = 100_000,
        batch_size: int = 1000,
        flush_interval: float = 0.25,
        retention_days: float | None = None,
    ) -> None:
        self.engine = engine
        self.instance = check_instance(instance)
        self.metrics_instance: str | None = None if engine.name == "sqlite" else self.instance
        """Whose calls ``/metrics`` counts: ``None`` (the whole file, which is one host's) on SQLite, this
        instance's on PostgreSQL (so a sum over the scraped instances counts each call once)."""
        self.hooks = hooks
        self.writer = Writer(
            engine,  # type: ignore[arg-type]
            prepare or _as_record,
            max_queue=max_queue,
            batch_size=batch_size,
            interval=flush_interval,
            instance=self.instance,
        )
        self.analytics = Analytics(engine)  # type: ignore[arg-type]
        """The dashboard's and the API's reads (one instance, shared by both)."""
        self.queries = Queries(engine)  # type: ignore[arg-type]
        self.traces = Traces(engine)  # type: ignore[arg-type]
        """Traces (the calls of one inbound request or ``monitor.trace()`` run) and sessions."""
        self.counters = Counters(engine)  # type: ignore[arg-type]
        self.retention = Retention(engine, retention_days) if retention_days is not None else None  # type: ignore[arg-type]
        self._alerts: AlertStore | None = None

    @property
    def alerts(self) -> AlertStore:
        """The alert state and event tables (created on first use)."""
        if self._alerts is None:
            from .alerts import AlertStore  # H4's store/alerts.py

            self._alerts = AlertStore(self.engine)  # type: ignore[arg-type]
        return self._alerts

    @property
    def max_queue(self) -> int:
        """Records that may wait for the writer before new ones are dropped (and counted)."""
        return self.writer.max_queue

    def flush(self, timeout: float | None = None) -> bool:
        """Return once everything submitted so far is stored (``False`` if ``timeout`` ran out first)."""
        return self.writer.flush(timeout)

    def stats(self) -> dict[str, Any]:
        """Writer counters and internal errors: queued, written, dropped, failed, internal_errors, last_write_at."""
        s = self.writer.stats()
        return {
            "queued": s.queued,
            "written": s.written,
            "dropped": s.dropped,
            "failed": s.failed,
            "internal_errors": self.hooks.internal_errors if self.hooks is not None else 0,
            "last_write_at": s.last_write_at,
        }

    def reprice(
        self, price: Callable[[CallRecord], float | None], *, since: float | None = None, batch: int = 500
    ) -> RepriceResult:
        """Recompute the stored calls' costs with ``price`` (calls started at or after ``since``; all when ``None``)
        in short transactions, the roll-ups, trace totals and counters updated by the difference in each."""
        from .reprice import reprice

        return reprice(self.engine, price, since=since, batch=batch)

    def close(self) -> None:
        """Stop retention, flush and stop the writer, close this thread's connection (reads reopen one)."""
        if self.retention is not None:
            self.retention.stop()
        self.writer.close()
        self.engine.close()

    def __repr__(self) -> str:
        return f"Store({self.engine.name}: {self.engine.location!r}, instance={self.instance!r})"
