"""Fixtures for the proxy tests: the deterministic upstream (module-wide) and a fresh monitor per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.proxy.running import serve
from tests.proxy.upstream import Upstream


@pytest.fixture(scope="module")
def upstream_app() -> Upstream:
    return Upstream()


@pytest.fixture(scope="module")
def upstream_url(upstream_app: Upstream) -> Iterator[str]:
    with serve(upstream_app) as url:
        yield url


@pytest.fixture
def upstream(upstream_app: Upstream, upstream_url: str) -> Upstream:
    """The upstream app, its memory cleared (``upstream_url`` serves it)."""
    upstream_app.reset()
    return upstream_app
