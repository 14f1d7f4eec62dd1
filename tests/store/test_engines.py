"""The engine contract on both engines (a SQLite file and a real PostgreSQL server), and the migrations.

Old SQLite files are built here with the raw DDL the old versions ran (not with today's code), so a change to a
released migration step shows up as a failure.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest

from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.engine.postgres import PostgresEngine, redact, translate
from llm_monitor_mw.store.schema import CALL_COLUMNS, SCHEMA_TABLE, SCHEMA_VERSION, SchemaTooNew
from tests.postgres_server import PostgresServer, free_port

TABLES = {
    "calls",
    "rollup_state",
    *(f"rollup_{t}_{g}" for t in ("calls", "latency", "latency_models", "dims", "quantiles") for g in ("hour", "day")),
    "counters_state",
    "counter_totals",
    "counter_latency",
    "alert_state",
    "alert_events",
    "llm_monitor_secrets",
    "trace_totals",
}
INSERT = "INSERT INTO calls (started_at, provider, operation, model) VALUES (?, ?, ?, ?)"


def columns(engine, table: str) -> list[str]:
    conn = engine.connection()
    if engine.name == "sqlite":
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    return [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
    ]


def primary_key(engine, table: str) -> list[str]:
    conn = engine.connection()
    if engine.name == "sqlite":
        rows = [r for r in conn.execute(f"PRAGMA table_info({table})") if r[5]]
        return [r[1] for r in sorted(rows, key=lambda r: r[5])]
    sql = """SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
             AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary
             ORDER BY array_position(i.indkey, a.attnum)"""
    return [r[0] for r in conn.execute(sql, [table])]


def tables(engine) -> set[str]:
    conn = engine.connection()
    if engine.name == "sqlite":
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {r[0] for r in conn.execute(sql)}


def indexes(engine) -> set[str]:
    conn = engine.connection()
    if engine.name == "sqlite":
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%pkey'"
    return {r[0] for r in conn.execute(sql)} - {"alert_state_key_key"}


def version(engine) -> int:
    conn = engine.connection()
    if engine.name == "sqlite":
        return conn.execute("PRAGMA user_version").fetchone()[0]
    return conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchone()[0]


# -- migrations ----------------------------------------------------------------------------------------------------


def test_migrate_from_empty(store_target: str) -> None:
    engine = open_engine(store_target)
    engine.ensure()
    assert version(engine) == SCHEMA_VERSION == 8
    assert tables(engine) - {SCHEMA_TABLE} == TABLES
    assert columns(engine, "calls") == ["id", *CALL_COLUMNS]
    assert columns(engine, "calls")[-1] == "key_hint"
    assert indexes(engine) == {
        "idx_calls_started_at",
        "idx_calls_provider_model",
        "idx_calls_model",
        "idx_calls_errors",
        "idx_calls_trace",
        "idx_calls_session",
        "idx_calls_key",
        "idx_trace_totals_started",
        "idx_trace_totals_route",
        "idx_trace_totals_user",
        "idx_alert_events_at",
    } | ({"trace_totals_trace_id_key"} if engine.name == "postgresql" else set())
    assert primary_key(engine, "counter_totals") == ["instance", "provider", "model", "status"]
    assert primary_key(engine, "counter_latency") == ["instance", "provider", "model", "metric", "bucket"]
    # the id is assigned by the database and grows; instance is stored; 64-bit integers and doubles survive
    big, precise = 2**53 + 1, 0.1 + 0.2
    engine.write(
        lambda c: c.execute(
            "INSERT INTO calls (started_at, provider, operation, instance, input_tokens, cost_usd)"
            " VALUES (?, 'p', 'o', 'host:1', ?, ?)",
            [1.0, big, precise],
        )
    )
    engine.write(lambda c: c.execute(INSERT, [2.0, "p", "o", "m"]))
    rows = engine.connection().execute("SELECT id, instance, input_tokens, cost_usd FROM calls ORDER BY id").fetchall()
    assert [r[1:] for r in rows] == [("host:1", big, precise), (None, None, None)]
    assert rows[0][0] < rows[1][0]
    engine.close()


def test_schema_newer_than_the_package_is_refused(store_target: str) -> None:
    engine = open_engine(store_target)
    engine.ensure()
    if engine.name == "sqlite":
        engine.connection().execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:
        engine.write(lambda c: c.execute(f"UPDATE {SCHEMA_TABLE} SET version = ?", [SCHEMA_VERSION + 1]))
    engine.close()
    with pytest.raises(SchemaTooNew, match=rf"schema version {SCHEMA_VERSION + 1} is newer .* upgrade the package"):
        open_engine(store_target).ensure()


OLD_V1 = (
    'CREATE TABLE "calls" (\n   "id" INTEGER PRIMARY KEY,\n   "started_at" REAL NOT NULL,\n'
    '   "provider" TEXT NOT NULL,\n   "operation" TEXT NOT NULL,\n   "endpoint" TEXT,\n   "method" TEXT,\n'
    '   "host" TEXT,\n   "call_id" TEXT,\n   "attempt" INTEGER,\n   "request_model" TEXT,\n'
    '   "response_model" TEXT,\n   "model" TEXT,\n   "status_code" INTEGER,\n   "ok" INTEGER,\n'
    '   "error_type" TEXT,\n   "error" TEXT,\n   "streamed" INTEGER,\n   "input_tokens" INTEGER,\n'
    '   "output_tokens" INTEGER,\n   "total_tokens" INTEGER,\n   "cached_tokens" INTEGER,\n'
    '   "cache_creation_tokens" INTEGER,\n   "reasoning_tokens" INTEGER,\n   "cost_usd" REAL,\n'
    '   "duration_ms" REAL,\n   "ttft_ms" REAL,\n   "ttlt_ms" REAL,\n   "output_tokens_per_s" REAL,\n'
    '   "finish_reason" TEXT,\n   "request_id" TEXT,\n   "ratelimit_remaining_requests" INTEGER,\n'
    '   "ratelimit_remaining_tokens" INTEGER,\n   "retry_after_s" REAL,\n   "response_bytes" INTEGER,\n'
    '   "tags" TEXT,\n   "request_content" TEXT,\n   "response_content" TEXT\n)',
    'CREATE INDEX "idx_calls_started_at"\n    ON "calls" ("started_at")',
    'CREATE INDEX "idx_calls_provider_model"\n    ON "calls" ("provider", "model", "started_at")',
    'CREATE INDEX "idx_calls_model"\n    ON "calls" ("model", "started_at")',
)
OLD_V2 = tuple(
    f'ALTER TABLE "calls" ADD COLUMN "{c}" TEXT' for c in ("route", "user", "inbound_method", "inbound_request_id")
)
_RC = """ts INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL,
    errors INTEGER NOT NULL, n429 INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
    tokens_n INTEGER NOT NULL, cost_usd REAL NOT NULL, cost_n INTEGER NOT NULL, duration_sum REAL NOT NULL,
    duration_n INTEGER NOT NULL, ttft_sum REAL NOT NULL, ttft_n INTEGER NOT NULL, PRIMARY KEY (ts, provider, model)"""
OLD_V3 = (
    "CREATE TABLE IF NOT EXISTS rollup_state (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID",
    *(f"CREATE TABLE IF NOT EXISTS rollup_calls_{g} ({_RC}) WITHOUT ROWID" for g in ("hour", "day")),
    *(
        f"CREATE TABLE IF NOT EXISTS rollup_latency_{g} (ts INTEGER NOT NULL, metric TEXT NOT NULL,"
        " hb INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (ts, metric, hb)) WITHOUT ROWID"
        for g in ("hour", "day")
    ),
    *(
        f"CREATE TABLE IF NOT EXISTS rollup_latency_models_{g} (ts INTEGER NOT NULL, provider TEXT NOT NULL,"
        " model TEXT NOT NULL, metric TEXT NOT NULL, hb INTEGER NOT NULL, n INTEGER NOT NULL,"
        " PRIMARY KEY (ts, provider, model, metric, hb)) WITHOUT ROWID"
        for g in ("hour", "day")
    ),
    *(
        f"CREATE TABLE IF NOT EXISTS rollup_dims_{g} (ts INTEGER NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL,"
        " requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
        " output_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,"
        " PRIMARY KEY (dim, ts, value)) WITHOUT ROWID"
        for g in ("hour", "day")
    ),
    *(
        f"CREATE TABLE IF NOT EXISTS rollup_quantiles_{g} (ts INTEGER NOT NULL, metric TEXT NOT NULL, p50 REAL,"
        " p95 REAL, PRIMARY KEY (ts, metric)) WITHOUT ROWID"
        for g in ("hour", "day")
    ),
    "CREATE INDEX IF NOT EXISTS idx_calls_errors ON calls(started_at) WHERE ok = 0",
)
OLD_V4 = (
    "CREATE TABLE IF NOT EXISTS counters_state (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS counter_totals (provider TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL, cache_creation_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, PRIMARY KEY (provider, model, status)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS counter_latency (provider TEXT NOT NULL, model TEXT NOT NULL, metric TEXT NOT NULL,
    bucket INTEGER NOT NULL, n INTEGER NOT NULL, sum_ms REAL NOT NULL,
    PRIMARY KEY (provider, model, metric, bucket)) WITHOUT ROWID""",
)
# what alerts/store.py created lazily before migration 5 (any version could have them)
OLD_ALERTS = (
    """CREATE TABLE IF NOT EXISTS alert_state (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    name TEXT NOT NULL, state TEXT NOT NULL, since REAL, clear_since REAL, fired_at REAL, value REAL, threshold REAL,
    severity TEXT NOT NULL, summary TEXT NOT NULL, period_start REAL, acked_at REAL, acked_by TEXT,
    version INTEGER NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alert_events (id INTEGER PRIMARY KEY, at REAL NOT NULL, key TEXT NOT NULL,
    source TEXT NOT NULL, name TEXT NOT NULL, event TEXT NOT NULL, severity TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, threshold REAL, summary TEXT NOT NULL, scope TEXT, by TEXT)""",
    "CREATE INDEX IF NOT EXISTS idx_alert_events_at ON alert_events(at)",
)


def old_sqlite_file(path: Path, old_version: int, *, alerts: bool) -> None:
    """A file as version ``old_version`` of the package left it, with a call (and counters/alerts where they
    existed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in (OLD_V1, OLD_V2, OLD_V3, OLD_V4)[:old_version]:
        for statement in sql:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {old_version}")
    conn.execute("INSERT INTO calls (started_at, provider, operation, model) VALUES (1.5, 'openai', 'chat', 'm')")
    if old_version >= 4:
        conn.execute("INSERT INTO counter_totals VALUES ('openai', 'm', '200', 3, 1, 10, 20, 0, 0, 0, 0.5)")
        conn.execute("INSERT INTO counter_latency VALUES ('openai', 'm', 'duration', 250, 3, 300.0)")
        conn.execute("INSERT INTO counters_state VALUES ('calls', 1)")
    if alerts:
        for statement in OLD_ALERTS:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO alert_state (key, source, name, state, severity, summary, version, updated_at)"
            " VALUES ('rule:x', 'rule', 'x', 'firing', 'warning', 's', 3, 2.0)"
        )
    conn.close()


@pytest.mark.parametrize("old_version", [1, 2, 3, 4])
@pytest.mark.parametrize("alerts", [False, True], ids=["", "lazy-alert-tables"])
def test_old_sqlite_files_migrate(tmp_path: Path, old_version: int, alerts: bool) -> None:
    if alerts and old_version < 4:
        pytest.skip("the alert manager came with version 4")
    path = tmp_path / "old.db"
    old_sqlite_file(path, old_version, alerts=alerts)
    engine = open_engine(path)
    engine.ensure()
    assert version(engine) == SCHEMA_VERSION
    assert tables(engine) == TABLES
    assert columns(engine, "calls") == ["id", *CALL_COLUMNS]
    conn = engine.connection()
    assert conn.execute("SELECT started_at, provider, model, route, instance FROM calls").fetchall() == [
        (1.5, "openai", "m", None, None)
    ]
    if old_version >= 4:
        assert conn.execute("SELECT instance, provider, requests, errors, input_tokens, cost_usd FROM counter_totals")
        assert conn.execute("SELECT * FROM counter_totals").fetchall() == [
            ("", "openai", "m", "200", 3, 1, 10, 20, 0, 0, 0, 0.5)
        ]
        assert conn.execute("SELECT * FROM counter_latency").fetchall() == [
            ("", "openai", "m", "duration", 250, 3, 300.0)
        ]
    assert primary_key(engine, "counter_totals") == ["instance", "provider", "model", "status"]
    states = conn.execute("SELECT key, state, version FROM alert_state").fetchall()
    assert states == ([("rule:x", "firing", 3)] if alerts else [])
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    engine.close()
    # a second open finds nothing to do
    again = open_engine(path)
    again.ensure()
    assert version(again) == SCHEMA_VERSION
    again.close()


def _migrate_in_child(url: str, barrier, results) -> None:  # runs in a spawned process
    applied: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "migrated the database" in record.getMessage():
                applied.append(record.getMessage())

    logger = logging.getLogger("llm_monitor_mw")
    logger.setLevel(logging.INFO)
    logger.addHandler(Collect())
    try:
        barrier.wait(timeout=60)
        engine = PostgresEngine(url)
        engine.ensure()
        results.put((os.getpid(), len(applied), None))
    except BaseException as exc:
        results.put((os.getpid(), len(applied), repr(exc)))


def test_pg_migrations_run_once_with_four_processes_starting_together(pg_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_migrate_in_child, args=(pg_url, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [o[2] for o in outcomes] == [None] * 4, outcomes
    assert sum(o[1] for o in outcomes) == SCHEMA_VERSION, outcomes  # each step applied by exactly one process
    engine = PostgresEngine(pg_url)
    assert version(engine) == SCHEMA_VERSION
    assert engine.connection().execute(f"SELECT count(*) FROM {SCHEMA_TABLE}").fetchone()[0] == 1
    engine.close()


# -- placeholders and values ---------------------------------------------------------------------------------------


def test_translate_placeholders() -> None:
    assert translate("SELECT ? + ?") == "SELECT %s + %s"
    assert translate("SELECT 1") == "SELECT 1"
    assert translate("WHERE a LIKE '50%' AND b = ?") == "WHERE a LIKE '50%%' AND b = %s"
    assert translate("SELECT 10 % 3, ?") == "SELECT 10 %% 3, %s"
    # a ? inside a string literal, a quoted identifier or a comment is not a placeholder
    assert translate("SELECT '?', 'it''s ?', ?") == "SELECT '?', 'it''s ?', %s"
    assert translate('SELECT "odd?name" FROM t WHERE x = ?') == 'SELECT "odd?name" FROM t WHERE x = %s'
    assert translate("SELECT ? -- why?\n, ?") == "SELECT %s -- why?\n, %s"
    assert translate("SELECT '%s'") == "SELECT '%%s'"


def test_placeholders_and_literals_on_the_server(store_target: str) -> None:
    engine = open_engine(store_target)
    conn = engine.connection()
    row = conn.execute("SELECT '?', 'it''s ?', ?, '50%', ? || '%s' -- really?\n", ["a", "b"]).fetchone()
    assert tuple(row) == ("?", "it's ?", "a", "50%", "b%s")
    assert conn.execute("SELECT '100%'").fetchone()[0] == "100%"
    engine.write(lambda c: c.executemany(INSERT, [(float(i), "p%", "o?", "m") for i in range(3)]))
    assert (
        conn.execute("SELECT count(*) FROM calls WHERE provider LIKE 'p%' AND operation = ?", ["o?"]).fetchone()[0] == 3
    )
    engine.close()


def test_numbers_come_back_as_int_or_float(store_target: str) -> None:
    engine = open_engine(store_target)
    engine.write(
        lambda c: c.executemany(INSERT.replace("model", "input_tokens"), [(1.0, "p", "o", 2), (2.0, "p", "o", 3)])
    )
    total, mean, tokens = (
        engine.connection()
        .execute("SELECT sum(input_tokens), avg(input_tokens), max(input_tokens) FROM calls")
        .fetchone()
    )
    assert (total, mean, tokens) == (5, 2.5, 3)
    assert type(total) is int and type(mean) is float and type(tokens) is int
    engine.close()


def test_location_has_no_password() -> None:
    assert redact("postgresql://app:s3cret@db.internal:5433/llm?sslmode=require&password=x") == (
        "postgresql://app@db.internal:5433/llm?sslmode=require"
    )
    assert PostgresEngine("postgres://u:p@h/d").location == "postgres://u@h/d"


# -- transactions ----------------------------------------------------------------------------------------------------


def test_write_rolls_back_on_exception(store_target: str) -> None:
    engine = open_engine(store_target)

    def fail(conn) -> None:
        conn.execute(INSERT, [1.0, "p", "o", "m"])
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        engine.write(fail)
    assert engine.connection().execute("SELECT count(*) FROM calls").fetchone()[0] == 0
    assert engine.write(lambda c: c.execute(INSERT, [2.0, "p", "o", "m"]).rowcount) == 1
    # an SQL error rolls back too, and is one of the engine's errors
    with pytest.raises(engine.errors):
        engine.write(lambda c: (c.execute(INSERT, [3.0, "p", "o", "m"]), c.execute("SELECT nope FROM calls")))
    assert engine.connection().execute("SELECT started_at FROM calls").fetchall() == [(2.0,)]
    engine.close()


def test_snapshot_sees_one_snapshot(store_target: str) -> None:
    engine = open_engine(store_target)
    engine.write(lambda c: c.execute(INSERT, [1.0, "p", "o", "m"]))
    other = threading.Thread(
        target=lambda: (engine.write(lambda c: c.execute(INSERT, [2.0, "p", "o", "m"])), engine.close())
    )
    with engine.snapshot() as conn:
        before = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        other.start()
        other.join(timeout=30)
        assert not other.is_alive()
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == before == 1
        assert conn.execute("SELECT max(started_at) FROM calls").fetchone()[0] == 1.0
        with engine.snapshot() as inner:  # nested: the same snapshot
            assert inner.execute("SELECT count(*) FROM calls").fetchone()[0] == 1
    assert engine.connection().execute("SELECT count(*) FROM calls").fetchone()[0] == 2
    if engine.name == "postgresql":
        with engine.snapshot() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(INSERT, [3.0, "p", "o", "m"])
    engine.close()


def test_iterate_streams(store_target: str) -> None:
    engine = open_engine(store_target)
    engine.write(lambda c: c.executemany(INSERT, [(float(i), "p", "o", "m") for i in range(2500)]))
    rows = engine.iterate("SELECT started_at FROM calls WHERE started_at >= ? ORDER BY id", [10.0], size=100)
    assert next(rows) == (10.0,)
    if engine.name == "postgresql":
        # a server-side cursor on a connection of its own, fetching 100 rows at a time
        sql = "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        queries = [r[0] for r in engine.connection().execute(sql)]
        assert any(q.startswith("FETCH FORWARD 100") for q in queries), queries
    assert [r[0] for r in rows] == [float(i) for i in range(11, 2500)]
    if engine.name == "postgresql":
        # its connection is closed once the rows are consumed (a closed backend leaves pg_stat_activity a moment
        # later, asynchronously: wait for it, bounded)
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        deadline = time.monotonic() + 5
        while (left := engine.connection().execute(sql).fetchone()[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert left == 0
    engine.close()


# -- PostgreSQL: lost connections, a down server, fork ---------------------------------------------------------------


def test_reconnects_after_the_server_killed_the_connection(pg_url: str, pg_server: PostgresServer) -> None:
    engine = PostgresEngine(pg_url)
    conn = engine.connection()
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pg_server.admin() as admin:
        assert admin.execute("SELECT pg_terminate_backend(?)".replace("?", "%s"), [pid]).fetchone()[0]
    # a write retries on a new connection
    assert engine.write(lambda c: c.execute(INSERT, [1.0, "p", "o", "m"]).rowcount) == 1
    assert engine.reconnects == 1
    new_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert new_pid != pid
    # a read on a connection the server dropped is run again on a new one
    with pg_server.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [new_pid])
    assert engine.connection().execute("SELECT count(*) FROM calls").fetchone()[0] == 1
    engine.close()


def test_a_down_server_fails_fast(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    engine = PostgresEngine(f"postgresql://u:p@127.0.0.1:{port}/db", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        engine.ensure()
    assert time.monotonic() - started < 2
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        engine.write(lambda c: c.execute("SELECT 1"), deadline=time.monotonic() + 1.0)
    assert time.monotonic() - started < 1.5


def test_a_server_that_never_answers_does_not_hang() -> None:
    # accepts TCP connections and never says a word: only the connect timeout ends the wait
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        engine = PostgresEngine(f"postgresql://u@127.0.0.1:{port}/db", connect_timeout=2)
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            engine.ensure()
        elapsed = time.monotonic() - started
        # a write with a deadline gives up by then, however long the engine's own connect timeout is
        patient = PostgresEngine(f"postgresql://u@127.0.0.1:{port}/db")
        assert patient.connect_timeout >= 5
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            patient.write(lambda c: c.execute("SELECT 1"), deadline=time.monotonic() + 2)
        waited = time.monotonic() - started
    assert 1.5 < elapsed < 5, elapsed
    assert waited < 3.5, waited


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_opens_its_own_connection(pg_url: str) -> None:
    engine = PostgresEngine(pg_url)
    conn = engine.connection()
    parent_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        code = 1
        try:
            inherited = conn.raw
            # a stale reference to the parent's connection must not talk on the parent's socket
            stale = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            mine = engine.connection().execute("SELECT pg_backend_pid()").fetchone()[0]
            inherited.close()  # nor end the parent's session when closed
            gc.collect()
            os.write(write, f"{stale} {mine}".encode())
            engine.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(child, 0)
    backends = [int(b) for b in os.read(read, 64).decode().split()]
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(backends) == 2 and parent_pid not in backends, (parent_pid, backends)
    # the parent's connection is still the same session
    assert conn.raw is engine.connection().raw
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == parent_pid
    assert engine.reconnects == 0
    engine.close()


def test_a_fresh_database_is_cheap(pg_server: PostgresServer) -> None:
    started = time.perf_counter()
    names = [pg_server.create_database()[0] for _ in range(5)]
    per_database = (time.perf_counter() - started) / 5
    for name in names:
        pg_server.drop_database(name)
    # ~50 ms on an idle 2-CPU machine; the bound only catches a pathological setup (a machine loaded by parallel
    # test runs took ~1 s)
    assert per_database < 5.0, per_database


def test_a_deadlocked_write_is_run_again(pg_url: str) -> None:
    engine = PostgresEngine(pg_url)
    engine.write(lambda c: c.executemany("INSERT INTO rollup_state (name, last_id) VALUES (?, 0)", [("a",), ("b",)]))
    barrier = threading.Barrier(2, timeout=20)
    runs: list[str] = []
    failures: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        def fn(conn) -> None:
            runs.append(first)
            conn.execute("UPDATE rollup_state SET last_id = last_id + 1 WHERE name = ?", [first])
            if runs.count(first) == 1:
                barrier.wait()  # both hold their first row: each now waits for the other's
            conn.execute("UPDATE rollup_state SET last_id = last_id + 1 WHERE name = ?", [second])

        try:
            engine.write(fn)
        except BaseException as exc:
            failures.append(exc)
        finally:
            engine.close()

    threads = [threading.Thread(target=writer, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert len(runs) == 3  # PostgreSQL broke the deadlock by failing one transaction, which ran again
    rows = engine.connection().execute("SELECT name, last_id FROM rollup_state ORDER BY name").fetchall()
    assert rows == [("a", 2), ("b", 2)]  # each write applied exactly once
    engine.close()
