"""Registers the ``browser`` marker (deselect with ``-m 'not browser'``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's Chromium through Playwright (needs both installed)")
