"""Fixtures shared by the capture tests: one scripted provider server per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.capture.scripted_server import ScriptedApp, serve


@pytest.fixture(scope="module")
def app() -> ScriptedApp:
    return ScriptedApp()


@pytest.fixture(scope="module")
def base_url(app: ScriptedApp) -> Iterator[str]:
    with serve(app) as url:
        yield url
