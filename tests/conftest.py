"""Shared fixtures: the bundled fake LLM server (real payload shapes over real sockets), a fresh Monitor, and the
storage targets: a throwaway PostgreSQL server (``pg_server``), a fresh database on it (``pg_url``) and
``store_target``, which runs a test once on a SQLite file and once on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# litellm fetches its price map from GitHub at import unless told not to: tests stay on loopback.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.store.queries import Filters
from tests.postgres_server import ENV_DSN, PostgresServer, find_bindir


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session: a throwaway cluster on 127.0.0.1 (see tests/postgres_server.py), or the
    server named by ``LLM_MONITOR_TEST_PG`` (a superuser base DSN). Without PostgreSQL installed the tests that need
    it are skipped, except under ``CI`` where that is a failure."""
    base = os.environ.get(ENV_DSN) or None
    if base is None and find_bindir() is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql, or set LLM_MONITOR_TEST_PG)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    server = PostgresServer(base).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """``postgresql://…`` URL of a fresh, empty database for this test (dropped afterwards)."""
    name, url = pg_server.create_database()
    yield url
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, once per engine: a SQLite file under ``tmp_path``, or a fresh PostgreSQL database URL.
    Pass it to ``Monitor(store_target)`` or ``open_engine(store_target)``."""
    if request.param == "sqlite":
        return str(tmp_path / "calls.db")
    return request.getfixturevalue("pg_url")
