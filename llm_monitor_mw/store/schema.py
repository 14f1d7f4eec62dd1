"""Tables, indexes and migrations. The schema version lives in ``PRAGMA user_version``."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

CALLS = "calls"

# Column name -> SQLite type, in the order the writer inserts them (JSON text for dict fields).
CALL_COLUMNS: dict[str, type] = {
    "started_at": float,
    "provider": str,
    "operation": str,
    "endpoint": str,
    "method": str,
    "host": str,
    "call_id": str,
    "attempt": int,
    "request_model": str,
    "response_model": str,
    "model": str,
    "status_code": int,
    "ok": int,
    "error_type": str,
    "error": str,
    "streamed": int,
    "input_tokens": int,
    "output_tokens": int,
    "total_tokens": int,
    "cached_tokens": int,
    "cache_creation_tokens": int,
    "reasoning_tokens": int,
    "cost_usd": float,
    "duration_ms": float,
    "ttft_ms": float,
    "ttlt_ms": float,
    "output_tokens_per_s": float,
    "finish_reason": str,
    "request_id": str,
    "ratelimit_remaining_requests": int,
    "ratelimit_remaining_tokens": int,
    "retry_after_s": float,
    "response_bytes": int,
    "tags": str,
    "request_content": str,
    "response_content": str,
    "route": str,
    "user": str,
    "inbound_method": str,
    "inbound_request_id": str,
}
V1_COLUMNS = tuple(CALL_COLUMNS)[: tuple(CALL_COLUMNS).index("response_content") + 1]


def _v1(db: sqlite_utils.Database) -> None:
    columns = {name: CALL_COLUMNS[name] for name in V1_COLUMNS}
    db[CALLS].create({"id": int, **columns}, pk="id", not_null={"started_at", "provider", "operation"})  # type: ignore[union-attr]
    table = db[CALLS]
    table.create_index(["started_at"], index_name="idx_calls_started_at")  # type: ignore[union-attr]
    table.create_index(["provider", "model", "started_at"], index_name="idx_calls_provider_model")  # type: ignore[union-attr]
    table.create_index(["model", "started_at"], index_name="idx_calls_model")  # type: ignore[union-attr]
    # Every index costs ingest speed (measured in benchmarks/overhead.py): attempts of one call are found by
    # call_id within a time window, and errors by scanning a time range, so neither gets an index of its own.


def _v2(db: sqlite_utils.Database) -> None:
    """Attribution: the inbound request (route template, user, method, request id) that caused each call."""
    table = db[CALLS]
    for name in ("route", "user", "inbound_method", "inbound_request_id"):
        table.add_column(name, str)  # type: ignore[union-attr]


# Dashboard roll-ups (see store/analytics.py, which fills them incrementally by row id).
ROLLUP_DDL = (
    "CREATE TABLE IF NOT EXISTS rollup_state (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID",
    *(
        f"""CREATE TABLE IF NOT EXISTS rollup_calls_{g} (
            ts INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
            requests INTEGER NOT NULL, errors INTEGER NOT NULL, n429 INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, tokens_n INTEGER NOT NULL,
            cost_usd REAL NOT NULL, cost_n INTEGER NOT NULL, duration_sum REAL NOT NULL, duration_n INTEGER NOT NULL,
            ttft_sum REAL NOT NULL, ttft_n INTEGER NOT NULL,
            PRIMARY KEY (ts, provider, model)) WITHOUT ROWID"""
        for g in ("hour", "day")
    ),
    *(
        f"""CREATE TABLE IF NOT EXISTS rollup_latency_{g} (
            ts INTEGER NOT NULL, metric TEXT NOT NULL, hb INTEGER NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (ts, metric, hb)) WITHOUT ROWID"""
        for g in ("hour", "day")
    ),
    *(
        f"""CREATE TABLE IF NOT EXISTS rollup_latency_models_{g} (
            ts INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, metric TEXT NOT NULL,
            hb INTEGER NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (ts, provider, model, metric, hb)) WITHOUT ROWID"""
        for g in ("hour", "day")
    ),
    *(
        f"""CREATE TABLE IF NOT EXISTS rollup_dims_{g} (
            ts INTEGER NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL,
            requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
            PRIMARY KEY (dim, ts, value)) WITHOUT ROWID"""
        for g in ("hour", "day")
    ),
    *(
        f"""CREATE TABLE IF NOT EXISTS rollup_quantiles_{g} (
            ts INTEGER NOT NULL, metric TEXT NOT NULL, p50 REAL, p95 REAL,
            PRIMARY KEY (ts, metric)) WITHOUT ROWID"""
        for g in ("hour", "day")
    ),
    # Errors are rare: a partial index finds the latest ones (and the "errors only" request list) without a scan,
    # and costs ingest only for failed calls.
    f"CREATE INDEX IF NOT EXISTS idx_calls_errors ON {CALLS}(started_at) WHERE ok = 0",
)


def _v3(db: sqlite_utils.Database) -> None:
    """Dashboard roll-ups and the partial index of failed calls. Filled later, in chunks, by the dashboard.

    ``IF NOT EXISTS``: databases written by 0.x development builds created these tables on first dashboard use.
    """
    for sql in ROLLUP_DDL:
        db.conn.execute(sql)


# Cumulative, never-pruned counters behind /metrics (see store/counters.py, which fills them by row id).
COUNTER_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")
COUNTER_DDL = (
    "CREATE TABLE IF NOT EXISTS counters_state (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID",
    f"""CREATE TABLE IF NOT EXISTS counter_totals (
        provider TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
        requests INTEGER NOT NULL, errors INTEGER NOT NULL,
        {", ".join(f"{c} INTEGER NOT NULL" for c in COUNTER_TOKEN_COLUMNS)}, cost_usd REAL NOT NULL,
        PRIMARY KEY (provider, model, status)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS counter_latency (
        provider TEXT NOT NULL, model TEXT NOT NULL, metric TEXT NOT NULL, bucket INTEGER NOT NULL,
        n INTEGER NOT NULL, sum_ms REAL NOT NULL,
        PRIMARY KEY (provider, model, metric, bucket)) WITHOUT ROWID""",
)


def _v4(db: sqlite_utils.Database) -> None:
    """Prometheus counters: totals and latency histograms per provider/model since the database was created."""
    for sql in COUNTER_DDL:
        db.conn.execute(sql)


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_v1, _v2, _v3, _v4)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION`, one transaction per step. Returns the version."""
    conn = db.conn
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this llm-monitor-mw understands ({SCHEMA_VERSION});"
            " upgrade the package"
        )
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                MIGRATIONS[version](db)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version
