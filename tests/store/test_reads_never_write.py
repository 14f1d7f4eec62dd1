"""A GET never writes: every dashboard page and fragment, API answer, export, ``/metrics`` and ``/health``,
with and without filters, leaves the database exactly as it was. On both engines.

How "nothing was written" is seen:
- SQLite: ``PRAGMA data_version`` of a connection of our own (it changes whenever another connection commits), and
  the size and mtime of the database file and of its ``-wal`` (readers touch only ``-shm``, their read marks);
- PostgreSQL: no row of any table has a tuple version (``xmin``) or a delete/lock mark (``xmax``) from a
  transaction id handed out after we started: a write, an upsert, a ``SELECT … FOR UPDATE`` would leave one.
Each detector is first shown to see a write, so the test can fail.

The app's routes are walked, so a page added later is covered without editing this test.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import projections
from llm_monitor_mw.store.engine import is_postgres_url
from tests.seed import insert

QUERIES = (
    "",
    "?range=1h",
    "?range=7d",
    "?range=30d&provider=openai",
    "?range=30d&model=gpt-4o&status=500",
    "?range=24h&tag=team:search",
    "?range=30d&route=/chat&user=u1",
    "?range=30d&q=hello",
    f"?since={int(time.time()) - 3 * 86400}&until={int(time.time())}",
)


def seed_records() -> list[CallRecord]:
    now = time.time()
    out = []
    for i in range(120):
        status = (200, 200, 200, 429, 500)[i % 5]
        out.append(
            CallRecord(
                started_at=now - (i * 1811) % (20 * 86400),
                provider=("openai", "anthropic")[i % 2],
                operation="chat",
                endpoint="/v1/chat/completions",
                request_model=("gpt-4o", "claude", None)[i % 3],
                status_code=status,
                error_type=None if status == 200 else "api_error",
                input_tokens=i,
                output_tokens=i % 9,
                cost_usd=i / 1000,
                duration_ms=float(50 + i * 37),
                ttft_ms=float(10 + i) if i % 2 else None,
                tags={"team": "search"} if i % 3 else {},
                route="/chat",
                user=f"u{i % 4}",
                request_content="hello" if i % 7 == 0 else None,
            )
        )
    return out


def get_routes(app: Any, prefix: str = "") -> Iterator[str]:
    """Paths of every GET route of the app (walking mounts and wrapping middleware)."""
    routes = getattr(app, "routes", None)
    if routes is None:
        inner = getattr(app, "app", None)
        if inner is not None:
            yield from get_routes(inner, prefix)
        return
    for route in routes:
        if isinstance(route, Mount):
            yield from get_routes(route.app, prefix + route.path)
        elif isinstance(route, Route) and "GET" in (route.methods or ()):
            yield prefix + route.path


class SqliteWatch:
    """Sees commits by any connection to the file (``data_version``), and any change of the file or its WAL."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.marked: tuple[Any, ...] = ()

    def _state(self) -> tuple[Any, ...]:
        files = []
        for name in (self.path, f"{self.path}-wal"):
            st = os.stat(name) if os.path.exists(name) else None
            files.append(None if st is None else (st.st_size, st.st_mtime_ns))
        return (self.conn.execute("PRAGMA data_version").fetchone()[0], *files)

    def mark(self) -> None:
        self.marked = self._state()

    def written(self) -> Any:
        """What changed since :meth:`mark` (falsy: nothing)."""
        now = self._state()
        return None if now == self.marked else (self.marked, now)

    def close(self) -> None:
        self.conn.close()


class PostgresWatch:
    """Sees any row version created, deleted or locked by a transaction id handed out since :meth:`mark`."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.since = 0

    def mark(self) -> None:
        self.since = int(self.conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])

    def written(self) -> Any:
        tables = [
            r[0]
            for r in self.conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        ]
        touched = []
        for table in tables:
            n = self.conn.execute(
                f'SELECT count(*) FROM "{table}" WHERE xmin::text::bigint >= %s'
                " OR (xmax::text::bigint <> 0 AND xmax::text::bigint >= %s)",
                (self.since, self.since),
            ).fetchone()[0]
            if n:
                touched.append((table, n))
        return touched

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def seeded(store_target: str) -> Iterator[Monitor]:
    mon = Monitor(store_target, flush_interval=0.05)
    insert(mon, seed_records())
    deadline = time.monotonic() + 30
    while projections.behind(mon.store.engine) and time.monotonic() < deadline:  # the writer catches up itself
        time.sleep(0.05)
    assert not projections.behind(mon.store.engine)
    yield mon
    mon.close()


def test_every_get_leaves_the_database_as_it_was(seeded: Monitor, store_target: str) -> None:
    app = seeded.asgi_app()
    client = TestClient(app)
    call_id = seeded.store.engine.connection().execute("SELECT max(id) FROM calls").fetchone()[0]
    paths = sorted({p.replace("{id}", str(call_id)) for p in get_routes(app)})
    assert {"/", "/requests", "/api/summary", "/metrics", "/health", "/requests.csv"} <= set(paths)
    w: SqliteWatch | PostgresWatch = (
        PostgresWatch(store_target) if is_postgres_url(store_target) else SqliteWatch(store_target)
    )
    try:
        # the detector sees a write (so this test can fail): one record through the writer, projected
        w.mark()
        insert(seeded, seed_records()[:1])
        deadline = time.monotonic() + 30
        while projections.behind(seeded.store.engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.written()
        w.mark()
        answered = 0
        for path in paths:
            for query in QUERIES:
                for headers in ({}, {"HX-Request": "true"}):
                    response = client.get(path + query, headers=headers)
                    assert response.status_code in (200, 400, 404), (path + query, response.status_code)
                    answered += response.status_code == 200
        assert answered > len(paths) * 4
        seeded.flush()
        assert not w.written()
    finally:
        w.close()
