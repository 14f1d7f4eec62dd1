"""Seeding a monitor's database with ready-made :class:`CallRecord` objects, bypassing capture."""

from __future__ import annotations

from collections.abc import Iterable

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord


def insert(monitor: Monitor, records: Iterable[CallRecord], *, timeout: float = 60) -> None:
    """Write ``records`` through ``monitor``'s writer as they are (no parsing or pricing) and wait for the disk."""
    monitor.writer.prepare = lambda r: r  # type: ignore[method-assign]
    for record in records:
        monitor.writer.submit(record)
    assert monitor.flush(timeout), "the writer did not flush in time"
