"""Fixtures shared by the alert, budget and Alerts-page tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_monitor_mw import Monitor


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    """A monitor on a fresh database, closed (alerts stopped) after the test."""
    with Monitor(tmp_path / "alerts.db") as mon:
        yield mon
