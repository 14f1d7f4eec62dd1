"""Every table and index, as versioned migrations that run the same steps on SQLite and PostgreSQL.

The DDL is built from the engine's :class:`~.engine.base.Dialect` (column types, the ``calls.id`` column,
``WITHOUT ROWID``), so one migration reads the same for both engines. Migrations are history: a step never changes
once released; a new column or table is a new step (and a new stored field of ``CallRecord`` goes at its end).

The version is SQLite's ``PRAGMA user_version``, and on PostgreSQL the one row of ``llm_monitor_schema``. On
PostgreSQL each step runs under a transaction-level advisory lock, so N processes starting together migrate once:
the others wait for the lock, then find the step done.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from ..record import stored_columns
from .engine.base import Connection, Dialect

logger = logging.getLogger("llm_monitor_mw")

CALLS = "calls"

CALL_COLUMNS: dict[str, type] = stored_columns()
"""Column name -> Python type (``int``, ``float``, ``str``; JSON text for dict fields) of every column of ``calls``
but ``id``, in table order (the order the writer inserts them). Derived from :class:`~llm_monitor_mw.record.CallRecord`;
a test asserts that the migrations produce exactly these columns."""

V1_COLUMNS: tuple[str, ...] = tuple(CALL_COLUMNS)[: tuple(CALL_COLUMNS).index("response_content") + 1]
"""The columns of the first schema."""
V2_COLUMNS: tuple[str, ...] = ("route", "user", "inbound_method", "inbound_request_id")
V5_COLUMNS: tuple[str, ...] = ("instance",)
V7_COLUMNS: tuple[str, ...] = ("trace_id", "trace_name", "span_name", "tool_call_count", "tool_names", "tool_arguments")
V8_COLUMNS: tuple[str, ...] = (
    "service_tier",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "response_id",
    "key_fingerprint",
    "key_hint",
)
SECRETS = "llm_monitor_secrets"
"""Secrets the store keeps for itself (``name`` -> ``value``): the key-fingerprint HMAC key (migration 8)."""

SCHEMA_TABLE = "llm_monitor_schema"
"""PostgreSQL: the table holding the schema version."""
MIGRATION_LOCK_KEY = 0x6C6C6D5F736368
"""PostgreSQL: the advisory lock taken around each migration step (per database)."""

# Step builders: each returns the statements of one step for a dialect.

_NOT_NULL = frozenset({"started_at", "provider", "operation"})


def _quote(name: str) -> str:
    return f'"{name}"' if name == "user" else name


def _sql_type(dialect: Dialect, python: type) -> str:
    return {int: dialect.integer, float: dialect.real, str: dialect.text}[python]


def _v1(dialect: Dialect) -> list[str]:
    columns = ",\n   ".join(
        f"{_quote(name)} {_sql_type(dialect, CALL_COLUMNS[name])}{' NOT NULL' if name in _NOT_NULL else ''}"
        for name in V1_COLUMNS
    )
    return [
        f"CREATE TABLE {CALLS} (\n   id {dialect.primary_key},\n   {columns}\n)",
        f"CREATE INDEX idx_calls_started_at ON {CALLS} (started_at)",
        f"CREATE INDEX idx_calls_provider_model ON {CALLS} (provider, model, started_at)",
        f"CREATE INDEX idx_calls_model ON {CALLS} (model, started_at)",
        # Every index costs ingest speed (measured in benchmarks/overhead.py): attempts of one call are found by
        # call_id within a time window, and errors by scanning a time range, so neither gets an index of its own.
    ]


def _v2(dialect: Dialect) -> list[str]:
    """Attribution: the inbound request (route template, user, method, request id) that caused each call."""
    return [f"ALTER TABLE {CALLS} ADD COLUMN {_quote(c)} {_sql_type(dialect, CALL_COLUMNS[c])}" for c in V2_COLUMNS]


def rollup_ddl(dialect: Dialect) -> tuple[str, ...]:
    """Dashboard roll-ups (filled incrementally by row id) and the partial index of failed calls."""
    i, r, t, w = dialect.integer, dialect.real, dialect.text, dialect.without_rowid
    return (
        f"CREATE TABLE IF NOT EXISTS rollup_state (name {t} PRIMARY KEY, last_id {i} NOT NULL){w}",
        *(
            f"""CREATE TABLE IF NOT EXISTS rollup_calls_{g} (
            ts {i} NOT NULL, provider {t} NOT NULL, model {t} NOT NULL,
            requests {i} NOT NULL, errors {i} NOT NULL, n429 {i} NOT NULL,
            input_tokens {i} NOT NULL, output_tokens {i} NOT NULL, total_tokens {i} NOT NULL,
            cached_tokens {i} NOT NULL, reasoning_tokens {i} NOT NULL, tokens_n {i} NOT NULL,
            cost_usd {r} NOT NULL, cost_n {i} NOT NULL, duration_sum {r} NOT NULL, duration_n {i} NOT NULL,
            ttft_sum {r} NOT NULL, ttft_n {i} NOT NULL,
            PRIMARY KEY (ts, provider, model)){w}"""
            for g in ("hour", "day")
        ),
        *(
            f"""CREATE TABLE IF NOT EXISTS rollup_latency_{g} (
            ts {i} NOT NULL, metric {t} NOT NULL, hb {i} NOT NULL, n {i} NOT NULL,
            PRIMARY KEY (ts, metric, hb)){w}"""
            for g in ("hour", "day")
        ),
        *(
            f"""CREATE TABLE IF NOT EXISTS rollup_latency_models_{g} (
            ts {i} NOT NULL, provider {t} NOT NULL, model {t} NOT NULL, metric {t} NOT NULL,
            hb {i} NOT NULL, n {i} NOT NULL,
            PRIMARY KEY (ts, provider, model, metric, hb)){w}"""
            for g in ("hour", "day")
        ),
        *(
            f"""CREATE TABLE IF NOT EXISTS rollup_dims_{g} (
            ts {i} NOT NULL, dim {t} NOT NULL, value {t} NOT NULL,
            requests {i} NOT NULL, errors {i} NOT NULL, input_tokens {i} NOT NULL,
            output_tokens {i} NOT NULL, total_tokens {i} NOT NULL, cost_usd {r} NOT NULL,
            PRIMARY KEY (dim, ts, value)){w}"""
            for g in ("hour", "day")
        ),
        *(
            f"""CREATE TABLE IF NOT EXISTS rollup_quantiles_{g} (
            ts {i} NOT NULL, metric {t} NOT NULL, p50 {r}, p95 {r},
            PRIMARY KEY (ts, metric)){w}"""
            for g in ("hour", "day")
        ),
        # Errors are rare: a partial index finds the latest ones (and the "errors only" request list) without a
        # scan, and costs ingest only for failed calls.
        f"CREATE INDEX IF NOT EXISTS idx_calls_errors ON {CALLS}(started_at) WHERE ok = 0",
    )


def _v3(dialect: Dialect) -> list[str]:
    """Dashboard roll-ups and the partial index of failed calls.

    ``IF NOT EXISTS``: databases written by 0.x development builds created these tables on first dashboard use.
    """
    return list(rollup_ddl(dialect))


COUNTER_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")


def counter_ddl(dialect: Dialect, *, instance: bool = True, suffix: str = "") -> tuple[str, ...]:
    """Cumulative, never-pruned counters behind ``/metrics``. ``instance``: keyed by the recording instance first
    (since migration 5). ``suffix`` names the tables differently (for a rebuild)."""
    i, r, t, w = dialect.integer, dialect.real, dialect.text, dialect.without_rowid
    key = f"instance {t} NOT NULL, " if instance else ""
    pk = "instance, " if instance else ""
    return (
        f"CREATE TABLE IF NOT EXISTS counters_state (name {t} PRIMARY KEY, last_id {i} NOT NULL){w}",
        f"""CREATE TABLE IF NOT EXISTS counter_totals{suffix} (
        {key}provider {t} NOT NULL, model {t} NOT NULL, status {t} NOT NULL,
        requests {i} NOT NULL, errors {i} NOT NULL,
        {", ".join(f"{c} {i} NOT NULL" for c in COUNTER_TOKEN_COLUMNS)}, cost_usd {r} NOT NULL,
        PRIMARY KEY ({pk}provider, model, status)){w}""",
        f"""CREATE TABLE IF NOT EXISTS counter_latency{suffix} (
        {key}provider {t} NOT NULL, model {t} NOT NULL, metric {t} NOT NULL, bucket {i} NOT NULL,
        n {i} NOT NULL, sum_ms {r} NOT NULL,
        PRIMARY KEY ({pk}provider, model, metric, bucket)){w}""",
    )


def _v4(dialect: Dialect) -> list[str]:
    """Prometheus counters: totals and latency histograms per provider/model since the database was created."""
    return list(counter_ddl(dialect, instance=False))


ALERT_STATE = "alert_state"
ALERT_EVENTS = "alert_events"


def alert_ddl(dialect: Dialect) -> tuple[str, ...]:
    """Alert and budget state (one row per alert, ``version`` bumped by every change) and the event log.

    ``IF NOT EXISTS``: before migration 5 the alert manager created these tables on first use.
    """
    r, t = dialect.real, dialect.text
    return (
        f"""CREATE TABLE IF NOT EXISTS {ALERT_STATE} (
        id {dialect.primary_key},
        key {t} NOT NULL UNIQUE,
        source {t} NOT NULL,
        name {t} NOT NULL,
        state {t} NOT NULL,
        since {r},
        clear_since {r},
        fired_at {r},
        value {r},
        threshold {r},
        severity {t} NOT NULL,
        summary {t} NOT NULL,
        period_start {r},
        acked_at {r},
        acked_by {t},
        version {dialect.integer} NOT NULL,
        updated_at {r} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {ALERT_EVENTS} (
        id {dialect.primary_key},
        at {r} NOT NULL,
        key {t} NOT NULL,
        source {t} NOT NULL,
        name {t} NOT NULL,
        event {t} NOT NULL,
        severity {t} NOT NULL,
        metric {t} NOT NULL,
        value {r},
        threshold {r},
        summary {t} NOT NULL,
        scope {t},
        by {t})""",
        f"CREATE INDEX IF NOT EXISTS idx_alert_events_at ON {ALERT_EVENTS}(at)",
    )


def _v5(dialect: Dialect) -> list[str]:
    """Fleets: the instance that recorded each call; counters keyed by instance (existing rows: instance ``''``);
    the alert tables, created here instead of lazily."""
    steps = [f"ALTER TABLE {CALLS} ADD COLUMN {c} {_sql_type(dialect, CALL_COLUMNS[c])}" for c in V5_COLUMNS]
    steps += list(alert_ddl(dialect))
    steps += list(dialect.functions)
    steps += list(counter_ddl(dialect, suffix="_v5")[1:])
    tokens = ", ".join(COUNTER_TOKEN_COLUMNS)
    steps += [
        "INSERT INTO counter_totals_v5 (instance, provider, model, status, requests, errors, "
        f"{tokens}, cost_usd) SELECT '', provider, model, status, requests, errors, {tokens}, cost_usd"
        " FROM counter_totals",
        "INSERT INTO counter_latency_v5 (instance, provider, model, metric, bucket, n, sum_ms)"
        " SELECT '', provider, model, metric, bucket, n, sum_ms FROM counter_latency",
        "DROP TABLE counter_totals",
        "DROP TABLE counter_latency",
        "ALTER TABLE counter_totals_v5 RENAME TO counter_totals",
        "ALTER TABLE counter_latency_v5 RENAME TO counter_latency",
    ]
    return steps


def _v6(dialect: Dialect) -> list[str]:
    """PostgreSQL: ``llm_monitor_jsonb`` is parallel unsafe (its exception block is a subtransaction, which a
    parallel plan refuses: at a million rows the tag queries failed with "cannot start subtransactions during a
    parallel operation"). SQLite: nothing to do."""
    if dialect.name != "postgresql":
        return []
    return ["ALTER FUNCTION llm_monitor_jsonb(TEXT) PARALLEL UNSAFE"]


TRACES = "trace_totals"
"""One row per trace: its totals, kept by the writer's projection pass (migration 7)."""
TRACE_SUMS: tuple[str, ...] = (
    "llm_ms",
    "duration_n",
    "calls",
    "attempts",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_n",
    "output_n",
    "total_n",
    "cost_usd",
    "cost_n",
    "unpriced",
    "errors",
    "tool_calls",
    "tool_n",
)
"""The additive columns of :data:`TRACES` (after ``started_at``/``ended_at``, which merge by min/max)."""
TRACE_FLOATS = frozenset({"llm_ms", "cost_usd"})
TRACE_ATTRIBUTES: tuple[str, ...] = ("trace_name", "route", "user", "inbound_method", "instance", "session")
"""The descriptive columns of :data:`TRACES`: the least (by code point) of the trace's calls' non-NULL values
(they are the same on every call of a trace but when one trace id spans services or instances)."""
ROLLUP_V7_SUMS: tuple[str, ...] = ("tool_requests", "unpriced")
"""Columns migration 7 adds to ``rollup_calls_{hour,day}``: calls that asked for tools, calls with tokens but
no cost."""


def trace_ddl(dialect: Dialect) -> tuple[str, ...]:
    """The trace projection table and its indexes (by start time, and by route or user then start time)."""
    i, r = dialect.integer, dialect.real
    # code-point order on PostgreSQL too, so trace ids and names sort (and tie-break pages) as on SQLite
    t = f'{dialect.text} COLLATE "C"' if dialect.name == "postgresql" else dialect.text
    sums = ", ".join(f"{c} {r if c in TRACE_FLOATS else i} NOT NULL" for c in TRACE_SUMS)
    attributes = ", ".join(f"{_quote(c)} {t}" for c in TRACE_ATTRIBUTES)
    return (
        f"""CREATE TABLE {TRACES} (
        id {dialect.primary_key}, trace_id {t} NOT NULL UNIQUE,
        started_at {r} NOT NULL, ended_at {r} NOT NULL, {sums}, {attributes})""",
        f"CREATE INDEX idx_trace_totals_started ON {TRACES} (started_at, trace_id)",
        f"CREATE INDEX idx_trace_totals_route ON {TRACES} (route, started_at, trace_id) WHERE route IS NOT NULL",
        f'CREATE INDEX idx_trace_totals_user ON {TRACES} ("user", started_at, trace_id) WHERE "user" IS NOT NULL',
    )


BACKFILLS: dict[int, Callable[[Dialect], list[str]]] = {}
"""Statements a step runs to bring projections up to date for rows already projected, by step number: registered
by :mod:`.projections`, where the projection's SQL is defined once (it imports this module, so this one cannot
import it back). A step whose backfill is missing fails loudly (``KeyError``) rather than skipping it."""


def session_index(dialect: Dialect) -> str:
    """The partial expression index of calls by their ``session`` tag (only tagged calls are in it)."""
    session = dialect.tag_value("tags", "session")
    return f"CREATE INDEX idx_calls_session ON {CALLS} (({session}), started_at) WHERE ({session}) IS NOT NULL"


def _v7(dialect: Dialect) -> list[str]:
    """Traces and tool calls: the trace each call belongs to (existing rows made while serving an inbound request
    join that request's trace), the names of the ``monitor.trace()`` blocks it ran in, and the tool calls the
    model asked for. The trace projection (filled here for the calls already projected; the writer keeps it from
    then on), calls by session tag, and two more roll-up sums (for the rows already rolled up: ``tool_requests``
    is 0, as no call recorded tool calls before; ``unpriced`` is counted from the calls still stored)."""
    steps = [f"ALTER TABLE {CALLS} ADD COLUMN {c} {_sql_type(dialect, CALL_COLUMNS[c])}" for c in V7_COLUMNS]
    steps += list(dialect.array_functions)
    steps += [
        f"UPDATE {CALLS} SET trace_id = inbound_request_id WHERE inbound_request_id IS NOT NULL",
        f"CREATE INDEX idx_calls_trace ON {CALLS} (trace_id, started_at) WHERE trace_id IS NOT NULL",
        session_index(dialect),
        *trace_ddl(dialect),
        *(
            f"ALTER TABLE rollup_calls_{g} ADD COLUMN {c} {dialect.integer} NOT NULL DEFAULT 0"
            for g in ("hour", "day")
            for c in ROLLUP_V7_SUMS
        ),
        *BACKFILLS[7](dialect),
    ]
    return steps


def _v8(dialect: Dialect) -> list[str]:
    """Prices as billed and usage per key: the service tier, the cache-write TTL split, the response id, and the
    fingerprint and hint of the API key (never the key); calls by key fingerprint; the store's own secrets table
    (the fingerprints' HMAC key, made once per database by the first writer that needs it); the count of priced
    calls in the dimension roll-ups (a route whose calls were never priced has an unknown cost, not $0)."""
    steps = [f"ALTER TABLE {CALLS} ADD COLUMN {c} {_sql_type(dialect, CALL_COLUMNS[c])}" for c in V8_COLUMNS]
    steps += [
        f"CREATE INDEX idx_calls_key ON {CALLS} (key_fingerprint, started_at) WHERE key_fingerprint IS NOT NULL",
        f"CREATE TABLE {SECRETS} (name {dialect.text} PRIMARY KEY, value {dialect.text} NOT NULL)",
        *(
            f"ALTER TABLE rollup_dims_{g} ADD COLUMN cost_n {dialect.integer} NOT NULL DEFAULT 0"
            for g in ("hour", "day")
        ),
        *BACKFILLS[8](dialect),
    ]
    return steps


Step = Callable[[Dialect], list[str]]
STEPS: tuple[Step, ...] = (_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8)
SCHEMA_VERSION = len(STEPS)

ROLLUP_DDL = rollup_ddl(Dialect())
"""The roll-up DDL for SQLite (its table names are what :mod:`.probe` reads)."""
COUNTER_DDL = counter_ddl(Dialect())
"""The counter DDL for SQLite, as of the current schema."""
ALERT_DDL = alert_ddl(Dialect())


def _raw(conn: Any) -> Any:
    """The DB-API connection of a ``sqlite_utils.Database``; any other connection as it is."""
    return conn.conn if hasattr(conn, "table_names") else conn


def _step_runner(step: Step) -> Callable[..., None]:
    def run(conn: Any, dialect: Dialect | None = None) -> None:
        raw = _raw(conn)
        for sql in step(dialect or Dialect()):
            raw.execute(sql)

    run.__name__ = step.__name__
    run.__doc__ = step.__doc__
    return run


MIGRATIONS: tuple[Callable[..., None], ...] = tuple(_step_runner(s) for s in STEPS)
"""Each step as ``fn(conn, dialect=SQLite)``, executing its statements on ``conn`` (in the caller's transaction;
``conn`` may be a ``sqlite_utils.Database``): what tests use to build the files an old version wrote."""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer llm-monitor-mw than this one."""


def _too_new(version: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"database schema version {version} is newer than this llm-monitor-mw understands ({SCHEMA_VERSION});"
        " upgrade the package"
    )


def migrate(conn: Connection | Any, dialect: Dialect | None = None) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION`, one transaction per step; returns the version.

    ``conn`` is an autocommit connection (SQLite: ``isolation_level=None``; a ``sqlite_utils.Database`` is
    accepted too); ``dialect`` is its engine's (SQLite when omitted). Raises :class:`SchemaTooNew` when the
    database is newer than this package.
    """
    dialect = dialect or Dialect()
    raw = _raw(conn)
    if dialect.name == "sqlite":
        return _migrate_sqlite(raw, dialect)
    return _migrate_postgres(raw, dialect)


def _migrate_sqlite(conn: sqlite3.Connection, dialect: Dialect) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise _too_new(version)
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _too_new(version)
            if version < SCHEMA_VERSION:
                for sql in STEPS[version](dialect):
                    conn.execute(sql)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
                logger.info("llm_monitor_mw: migrated the database to schema version %d", version)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # a lost connection must not hide the original error
                conn.execute("ROLLBACK")
            raise
    return version


def postgres_version(conn: Connection) -> int | None:
    """The schema version of a PostgreSQL database, ``None`` if it was never migrated."""
    exists = conn.execute("SELECT to_regclass(?) IS NOT NULL", [SCHEMA_TABLE]).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(f"SELECT max(version) FROM {SCHEMA_TABLE}").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _migrate_postgres(conn: Connection, dialect: Dialect) -> int:
    version = postgres_version(conn)  # outside the lock: the common case (up to date) takes no lock at all
    if version is not None and version > SCHEMA_VERSION:
        raise _too_new(version)
    while version is None or version < SCHEMA_VERSION:
        conn.execute("BEGIN")
        try:
            conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            # Re-read under the lock: another process may have migrated meanwhile.
            conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version {dialect.integer} NOT NULL)")
            version = postgres_version(conn) or 0
            if version > SCHEMA_VERSION:
                raise _too_new(version)
            if version < SCHEMA_VERSION:
                for sql in STEPS[version](dialect):
                    conn.execute(sql)
                version += 1
                conn.execute(f"DELETE FROM {SCHEMA_TABLE}")
                conn.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (?)", [version])
                logger.info("llm_monitor_mw: migrated the database to schema version %d", version)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # a lost connection must not hide the original error
                conn.execute("ROLLBACK")
            raise
    return version
