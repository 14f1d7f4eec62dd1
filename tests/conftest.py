"""Shared fixtures: the bundled fake LLM server (real payload shapes over real sockets) and a fresh Monitor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.store.queries import Filters


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "calls.db", flush_interval=0.05)
    yield mon
    mon.close()


def records(monitor: Monitor, **filters: object) -> list[dict]:
    """Everything recorded so far, oldest first (after a flush)."""
    assert monitor.flush(timeout=10), "writer did not flush in time"
    items, _ = monitor.queries.requests(Filters(**filters), limit=1000)  # type: ignore[arg-type]
    return list(reversed(items))


def only_record(monitor: Monitor) -> dict:
    rows = records(monitor)
    assert len(rows) == 1, rows
    return rows[0]
