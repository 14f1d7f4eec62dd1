"""The projections the writer maintains (``store/projections.py``) equal the raw rows they summarise: after random
batches, after several writer processes at once, after catching up an old database's backlog. On both engines.

The oracle is Python over the records themselves (not the projection's own SQL), so a wrong ``GROUP BY``, bucket or
``ON CONFLICT`` shows up as a difference.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import projections
from llm_monitor_mw.store.counters import Counters
from llm_monitor_mw.store.engine import Engine, open_engine
from llm_monitor_mw.store.projections import DAY, HOUR, LATENCY_BUCKETS_S, Projector, catch_up, lock_cursor
from llm_monitor_mw.store.schema import CALL_COLUMNS, MIGRATIONS, V7_COLUMNS, V8_COLUMNS
from llm_monitor_mw.store.values import PLAUSIBLE
from llm_monitor_mw.store.writer import _INSERT, Writer, finite_row, insert_records, record_row

NOW = 1_790_000_000.0
TABLES = (
    "calls",
    "rollup_state",
    "counter_totals",
    "counter_latency",
    "counters_state",
    *(f"rollup_{t}_{g}" for t in ("calls", "latency", "latency_models", "dims", "quantiles") for g in ("hour", "day")),
)

records_strategy = st.builds(
    CallRecord,
    started_at=st.floats(NOW - 3 * DAY, NOW),
    provider=st.sampled_from(["openai", "anthropic"]),
    operation=st.just("chat"),
    endpoint=st.just("/v1/chat/completions"),
    request_model=st.sampled_from(["a", "b", None]),
    status_code=st.sampled_from([200, 200, 429, 500, None]),
    input_tokens=st.one_of(st.none(), st.integers(0, 10_000)),
    output_tokens=st.one_of(st.none(), st.integers(0, 10_000)),
    cost_usd=st.one_of(st.none(), st.floats(0, 5)),
    duration_ms=st.one_of(st.none(), st.floats(0, 400_000)),
    ttft_ms=st.one_of(st.none(), st.floats(0, 60_000)),
    tags=st.dictionaries(st.sampled_from(["team", "env"]), st.sampled_from(["x", "y"]), max_size=2),
    route=st.sampled_from(["/a", "/b", None]),
    user=st.sampled_from(["u1", "u2", None]),
    instance=st.sampled_from(["i1", "i2", None]),
)


@pytest.fixture
def engine(store_target: str) -> Iterator[Engine]:
    eng = open_engine(store_target)
    eng.ensure()
    yield eng
    eng.close()


def clear(engine: Engine) -> None:
    def fn(conn: Any) -> None:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")

    engine.write(fn)


def raw_insert(engine: Engine, records: list[CallRecord]) -> None:
    """Insert without projecting (as an older version, or a writer that died before projecting, left them)."""
    rows = [finite_row(record_row(r)) for r in records]
    engine.write(lambda conn: conn.executemany(_INSERT, rows))


def floor_to(ts: float, step: int) -> int:
    return math.floor(ts / step) * step


def expected_calls(records: list[CallRecord], step: int) -> dict[tuple[Any, ...], tuple[int, int, int, int]]:
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in records:
        acc = out[(floor_to(r.started_at, step), r.provider, r.model or "")]
        acc[0] += 1
        acc[1] += 0 if r.ok else 1
        acc[2] += r.input_tokens or 0
        acc[3] += 1 if r.duration_ms is not None else 0
    return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def stored_calls(engine: Engine, grain: str) -> dict[tuple[Any, ...], tuple[int, int, int, int]]:
    rows = engine.connection().execute(
        f"SELECT ts, provider, model, requests, errors, input_tokens, duration_n FROM rollup_calls_{grain}"
    )
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5], r[6]) for r in rows}


def expected_counters(records: list[CallRecord]) -> dict[tuple[str, str, str, str], tuple[int, int, int]]:
    out: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        status = "error" if r.status_code is None else str(r.status_code)
        acc = out[(r.instance or "", r.provider, r.model or "", status)]
        acc[0] += 1
        acc[1] += 0 if r.ok else 1
        acc[2] += r.output_tokens or 0
    return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def stored_counters(engine: Engine) -> dict[tuple[str, str, str, str], tuple[int, int, int]]:
    rows = engine.connection().execute(
        "SELECT instance, provider, model, status, requests, errors, output_tokens FROM counter_totals"
    )
    return {(r[0], r[1], r[2], r[3]): (r[4], r[5], r[6]) for r in rows}


def expected_buckets(records: list[CallRecord]) -> Counter[tuple[str, str, int]]:
    """Prometheus buckets: the first bound ``le`` with ``duration <= le`` (exact), else ``+Inf``."""
    out: Counter[tuple[str, str, int]] = Counter()
    for r in records:
        if r.duration_ms is not None:
            index = next((i for i, b in enumerate(LATENCY_BUCKETS_S) if r.duration_ms <= b * 1000), None)
            out[(r.provider, r.model or "", len(LATENCY_BUCKETS_S) if index is None else index)] += 1
    return out


def check_all(engine: Engine, records: list[CallRecord]) -> None:
    """Every projection equals the raw records (the cursor at the last row)."""
    conn = engine.connection()
    assert projections.cursor(conn) == (conn.execute("SELECT max(id) FROM calls").fetchone()[0] or 0)
    assert stored_calls(engine, "hour") == expected_calls(records, HOUR)
    assert stored_calls(engine, "day") == expected_calls(records, DAY)
    assert stored_counters(engine) == expected_counters(records)
    durations = sum(1 for r in records if r.duration_ms is not None)
    ttfts = sum(1 for r in records if r.ttft_ms is not None)
    for grain in ("hour", "day"):
        hist = dict(conn.execute(f"SELECT metric, sum(n) FROM rollup_latency_{grain} GROUP BY metric").fetchall())
        assert {k: v for k, v in hist.items() if v} == {k: v for k, v in (("d", durations), ("t", ttfts)) if v}
        models = conn.execute(f"SELECT sum(n) FROM rollup_latency_models_{grain}").fetchone()[0] or 0
        assert models == durations + ttfts
        routes = dict(
            conn.execute(f"SELECT value, sum(requests) FROM rollup_dims_{grain} WHERE dim = 'route' GROUP BY value")
        )
        assert routes == dict(Counter(r.route for r in records if r.route is not None))
        priced = dict(
            conn.execute(f"SELECT value, sum(cost_n) FROM rollup_dims_{grain} WHERE dim = 'route' GROUP BY value")
        )
        assert priced == {route: sum(1 for r in records if r.route == route and _priced(r)) for route in routes}
        tags = dict(
            conn.execute(f"SELECT value, sum(requests) FROM rollup_dims_{grain} WHERE dim = 'tag' GROUP BY value")
        )
        assert tags == dict(Counter(f"{k}:{v}" for r in records for k, v in r.tags.items()))
    quantile_hours = {r[0] for r in conn.execute("SELECT ts FROM rollup_quantiles_hour WHERE metric = 'd'")}
    assert quantile_hours == {floor_to(r.started_at, HOUR) for r in records if r.duration_ms is not None}
    histograms = Counters(engine).histograms()
    got = Counter(
        {(h.provider, h.model, i): n for h in histograms if h.metric == "duration" for i, n in enumerate(h.counts) if n}
    )
    assert got == expected_buckets(records)


def _priced(record: CallRecord) -> bool:
    cost = record.cost_usd
    return cost is not None and math.isfinite(cost) and abs(cost) < PLAUSIBLE


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(records_strategy, max_size=25), min_size=1, max_size=5), limit=st.integers(1, 40))
def test_projections_equal_raw_aggregates_after_random_batches(
    engine: Engine, batches: list[list[CallRecord]], limit: int
) -> None:
    clear(engine)
    written: list[CallRecord] = []
    for i, batch in enumerate(batches):
        if i % 2:
            raw_insert(engine, batch)  # rows past the cursor: the next projection picks them up
        else:
            insert_records(engine, batch, project_limit=limit)  # projects at most len(batch) + limit rows
        written.extend(batch)
        # exact at every moment: the readers add the rows past the cursor from raw rows
        assert sum(t.requests for t in Counters(engine).totals()) == len(written)
        per_instance = Counters(engine).totals("i1")
        assert sum(t.requests for t in per_instance) == sum(1 for r in written if r.instance == "i1")
    catch_up(engine, limit=limit)
    check_all(engine, written)


def _write_in_process(target: str, start: Any, n: int) -> None:
    start.wait(30)
    engine = open_engine(target)
    writer = Writer(engine, lambda r: r, batch_size=9, interval=0.001, instance=f"p{os.getpid()}", project_limit=4)
    writer.start()
    for i in range(n):
        writer.submit(record(i, instance=None))
    assert writer.flush(60)
    writer.close()


def record(i: int, **kw: Any) -> CallRecord:
    return CallRecord(
        started_at=NOW - (i * 97) % (2 * DAY),
        provider=("openai", "anthropic")[i % 2],
        operation="chat",
        endpoint="/v1",
        request_model=("a", "b", "c")[i % 3],
        status_code=(200, 200, 429, 500)[i % 4],
        input_tokens=i,
        output_tokens=i % 7,
        duration_ms=float(i * 13 % 90_000),
        ttft_ms=float(i % 500) if i % 3 else None,
        tags={"team": "x"} if i % 2 else {},
        route="/r" if i % 5 else None,
        **kw,
    )


def test_several_writer_processes_project_each_row_once(engine: Engine, store_target: str) -> None:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_write_in_process, args=(store_target, start, 120)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    catch_up(engine)
    conn = engine.connection()
    rows = conn.execute("SELECT id, instance FROM calls ORDER BY id").fetchall()
    assert len(rows) == 360
    written = [
        record(i, instance=f"p{p.pid}") for p in procs for i in range(120)
    ]  # each process wrote the same 120 records under its own instance name
    check_all(engine, written)
    assert {inst for _, inst in rows} == {f"p{p.pid}" for p in procs}


def test_a_backlog_is_caught_up_in_short_transactions(engine: Engine) -> None:
    """An old database: rows nobody projected. The writer, idle, catches up in transactions of its limit."""
    backlog = [record(i) for i in range(1500)]
    raw_insert(engine, backlog)
    assert projections.behind(engine)
    durations: list[float] = []
    inner = engine.write

    def timed(fn: Any, **kw: Any) -> Any:
        def run(conn: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(conn)
            finally:
                durations.append(time.perf_counter() - began)

        return inner(run, **kw)

    engine.write = timed  # type: ignore[method-assign]
    writer = Writer(engine, lambda r: r, interval=0.01, project_limit=200)
    writer.start()
    deadline = time.monotonic() + 60
    while projections.behind(engine) and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.close()
    engine.write = inner  # type: ignore[method-assign]
    assert not projections.behind(engine)
    assert len(durations) >= 1500 // 200  # one short transaction per chunk, never one long one
    check_all(engine, backlog)


def _old_database(path: Path, rows: list[CallRecord], counted: int | None) -> None:
    """A SQLite file as version 4 left it: no instance column, roll-ups never built (the dashboard never opened),
    ``/metrics`` counters kept by their own cursor up to row ``counted`` (``None``: never scraped)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for step in MIGRATIONS[:4]:
        step(conn)
    conn.execute("PRAGMA user_version = 4")
    names = list(CALL_COLUMNS)
    later = {"instance", *V7_COLUMNS, *V8_COLUMNS}  # columns added after version 4
    columns = [c for c in names if c not in later]
    values = [tuple(v for c, v in zip(names, finite_row(record_row(r)), strict=True) if c not in later) for r in rows]
    quoted = ", ".join(f'"{c}"' if c == "user" else c for c in columns)
    conn.executemany(f"INSERT INTO calls ({quoted}) VALUES ({', '.join('?' for _ in columns)})", values)
    if counted is not None:  # what the old counters.py did, for rows (0, counted]
        conn.execute(
            """INSERT INTO counter_totals SELECT provider, coalesce(model, ''), coalesce(CAST(status_code AS TEXT),
               'error'), count(*), count(CASE WHEN ok = 0 THEN 1 END), total(input_tokens), total(output_tokens),
               total(cached_tokens), total(cache_creation_tokens), total(reasoning_tokens), total(cost_usd)
               FROM calls WHERE id <= ? GROUP BY 1, 2, 3""",
            (counted,),
        )
        for metric, column in (("duration", "duration_ms"), ("ttft", "ttft_ms")):
            conn.execute(
                f"""INSERT INTO counter_latency SELECT provider, coalesce(model, ''), '{metric}',
                    {projections.bucket_case(column)}, count(*), total({column})
                    FROM calls WHERE id <= ? AND {column} IS NOT NULL GROUP BY 1, 2, 4""",
                (counted,),
            )
        conn.execute("INSERT INTO counters_state VALUES ('calls', ?), ('exposed:model:a', 0)", (counted,))
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("counted", [None, 0, 700, 1200], ids=["never-scraped", "zero", "part", "most"])
def test_an_old_sqlite_database_is_migrated_and_caught_up(tmp_path: Path, counted: int | None) -> None:
    path = tmp_path / "old.db"
    backlog = [record(i) for i in range(1200)]
    _old_database(path, backlog, counted)
    engine = open_engine(path)
    engine.ensure()  # migration 5: counters keyed by instance ''
    # exact before the catch-up too: the counters read their own (older) cursor and add the rest from raw rows
    assert sum(t.requests for t in Counters(engine).totals()) == 1200
    # the roll-ups catch up first here (cursor 0) while the counters' cursor may be ahead: both end at the top
    projector = Projector(engine, limit=300)
    while projections.behind(engine):
        engine.write(lambda conn: projector.project(conn, lock_cursor(conn, engine.dialect)))
        assert sum(t.requests for t in Counters(engine).totals()) == 1200
    assert engine.connection().execute("SELECT count(*) FROM counters_state").fetchone()[0] == 0
    check_all(engine, backlog)  # instance '' for the old rows: their records have instance None
    engine.close()


def test_migration_8_counts_the_priced_calls_of_rows_already_rolled_up(engine: Engine) -> None:
    # a route whose calls were never priced reads as unknown cost, not $0: the dims roll-ups count priced calls
    records = [record(i, cost_usd=0.01 if i % 3 else None) for i in range(60)]
    records[50:] = [dataclasses.replace(r, started_at=NOW - 10 * DAY - i) for i, r in enumerate(records[50:])]
    insert_records(engine, records)
    engine.write(lambda conn: conn.execute("DELETE FROM calls WHERE id > 50"))  # some calls pruned since
    engine.write(lambda conn: [conn.execute(f"UPDATE rollup_dims_{g} SET cost_n = 0") for g in ("hour", "day")])
    engine.write(lambda conn: [conn.execute(sql) for sql in projections.backfill_v8(engine.dialect)])
    conn = engine.connection()
    stored = records[:50]
    for grain, step in (("hour", HOUR), ("day", DAY)):
        sql = f"SELECT ts, value, requests, cost_n, cost_usd FROM rollup_dims_{grain} WHERE dim = 'route'"
        gone = 0
        for ts, value, requests, cost_n, cost_usd in conn.execute(sql).fetchall():
            kept = [r for r in stored if r.route == value and floor_to(r.started_at, step) == ts]
            if kept:
                assert cost_n == sum(1 for r in kept if r.cost_usd is not None), (grain, ts)
            else:  # its calls are gone: a nonzero sum counts every call as priced
                gone += 1
                assert cost_n == (requests if cost_usd else 0), (grain, ts)
        assert gone  # the pruned calls left roll-up rows of their own
    assert conn.execute("SELECT count(*) FROM rollup_dims_hour WHERE cost_n > 0").fetchone()[0] > 0


def test_a_failing_projection_keeps_the_inserts_and_the_cursor(engine: Engine) -> None:
    insert_records(engine, [record(1)])
    engine.write(lambda conn: conn.execute("DROP TABLE rollup_dims_day"))  # the pass cannot complete
    progress = insert_records(engine, [record(2), record(3)])
    assert progress.failed and progress.cursor == 1
    assert engine.connection().execute("SELECT count(*) FROM calls").fetchone()[0] == 3
    assert sum(t.requests for t in Counters(engine).totals()) == 3  # still exact, from raw rows


def test_day_rollups_are_the_hour_groups_grouped_by_day_before_1970_too(engine: Engine) -> None:
    # the day rows are summed from the hour groups in SQL: integer arithmetic that must floor negative hours too
    times = (-DAY - 1.0, -DAY + 1.0, -5_000.0, -1.0, 0.0, 3_599.0, DAY + 7.0)
    records = [
        CallRecord(started_at=t, provider="openai", operation="chat", endpoint="/v1/x", duration_ms=100.0)
        for t in times
    ]
    insert_records(engine, records)
    check_all(engine, records)
    days = dict(engine.connection().execute("SELECT ts, requests FROM rollup_calls_day").fetchall())
    assert days == {-2 * DAY: 1, -DAY: 3, 0: 2, DAY: 1}


def test_tag_reads_and_projections_survive_a_parallel_plan(engine: Engine) -> None:
    """PostgreSQL plans a million-row scan in parallel; the tag parser (an exception block) must not be parallel
    safe there, or every tag query fails ("cannot start subtransactions during a parallel operation")."""
    if engine.name != "postgresql":
        pytest.skip("parallel plans are PostgreSQL's")
    from llm_monitor_mw.store.read import Analytics, Filters

    records = [
        CallRecord(
            started_at=NOW - i, provider="openai", operation="chat", endpoint="/v1/x", tags={"team": "ab"[i % 2]}
        )
        for i in range(200)
    ]
    raw_insert(engine, records)
    conn = engine.connection()
    for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
        conn.execute(f"SET {setting} = 0")
    conn.execute("SET max_parallel_workers_per_gather = 2")
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT count(*) FROM calls WHERE tags IS NOT NULL"))
    assert "Parallel" in plan  # the settings do force a parallel plan where nothing forbids it
    rows = Analytics(engine, use_rollups=False).by_dim(Filters(since=NOW - DAY, until=NOW + 1), "tag", order="requests")
    assert {r["value"]: r["requests"] for r in rows} == {"team:a": 100, "team:b": 100}
