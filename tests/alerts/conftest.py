"""Fixtures shared by the alert, budget and Alerts-page tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_monitor_mw import Monitor


@pytest.fixture
def monitor(store_target: str) -> Iterator[Monitor]:
    """A monitor on a fresh store, once per engine (SQLite file, PostgreSQL database); closed (alerts stopped)
    after the test."""
    with Monitor(store_target) as mon:
        yield mon
