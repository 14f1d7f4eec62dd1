"""Traces, sessions, tool filters and unpriced calls, on both engines.

Rows go in through the real writer from two instances (one trace spans both), then more rows straight through
SQL past the projection cursor (an existing trace grows, a new one appears): every answer of the trace projection
must equal the same question answered from raw rows, before and after the catch-up.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import projections, retention
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.engine.base import Engine
from llm_monitor_mw.store.read import TRACE_SORTS, Analytics, Filters, Queries, Traces
from llm_monitor_mw.web.params import ParamError, parse_dimensions
from tests.seed import insert

T0 = 1_780_000_000.0 + 1234.5
DAY = 86400.0
LONG_ID = "L" * 10_000
HOSTILE_IDS = [LONG_ID, "трасса-✓ 😀", "x'; DROP TABLE calls; --", '%_\\"?']
SPANNING = "spans-two-instances"
WHOLE = Filters(since=T0 - DAY, until=T0 + 6 * DAY)


def _records(rng: random.Random) -> list[CallRecord]:
    """About 700 calls in ~200 traces (requests and runs), some outside any trace, a few with hostile ids."""
    out: list[CallRecord] = []
    ids = [f"req-{k}" for k in range(120)] + [f"run-{k}" for k in range(60)] + HOSTILE_IDS + [SPANNING]
    serial = 0
    for trace in ids:
        start = T0 + rng.uniform(0, 5 * DAY)
        request = not trace.startswith("run-")
        route = rng.choice(["/chat", "/search", "/Ä"]) if request else None
        user = rng.choice(["u1", "u2", None]) if request else None
        session = rng.choice([None, "s-1", "s-2", "séance"])
        at = start
        for _ in range(rng.randint(1, 6)):
            serial += 1
            tries = 2 if rng.random() < 0.2 else 1
            for attempt in range(1, tries + 1):
                ok = attempt == tries and rng.random() > 0.1
                tools = rng.choice([None, 0, 1, 2])
                names = {None: None, 0: [], 1: ["get_weather"], 2: ["search", "get_weather"]}[tools]
                out.append(
                    CallRecord(
                        started_at=at,
                        provider=rng.choice(["openai", "anthropic"]),
                        operation="chat",
                        endpoint="/v1/chat/completions",
                        request_model=rng.choice(["gpt-4o-mini", "claude-haiku", None]),
                        call_id=f"c{serial}",
                        attempt=attempt,
                        status_code=200 if ok else rng.choice([429, 500, None]),
                        error_type=None if ok else "server_error",
                        input_tokens=rng.choice([12, 300, None]) if ok else None,
                        output_tokens=rng.choice([7, None]) if ok else None,
                        total_tokens=rng.choice([19, None]) if ok else None,
                        cost_usd=rng.choice([0.001, 3.6e-6, None]) if ok else None,
                        duration_ms=rng.choice([rng.uniform(50, 3000), None]),
                        route=route,
                        user=user,
                        inbound_method=rng.choice(["GET", "POST"]) if request else None,
                        inbound_request_id=trace if request else None,
                        trace_id=trace,
                        trace_name=None if request else rng.choice(["agent", "nightly ✓"]),
                        span_name=rng.choice([None, "plan", "plan / tool"]),
                        tool_call_count=tools if ok else None,
                        tool_names=names if ok else None,
                        tags={"session": session} if session else {"feature": "x"},
                    )
                )
                at += rng.uniform(0.05, 2.0)
    for i in range(40):  # calls outside any trace, some in a session
        out.append(
            CallRecord(
                started_at=T0 + rng.uniform(0, 5 * DAY),
                provider="openai",
                operation="chat",
                endpoint="/v1/chat/completions",
                request_model="gpt-4o-mini",
                call_id=f"loose{i}",
                status_code=200,
                input_tokens=5,
                cost_usd=None,
                tags={"session": "s-1"} if i % 4 == 0 else {},
            )
        )
    rng.shuffle(out)
    return out


TAIL = (
    "INSERT INTO calls (started_at, provider, operation, endpoint, method, host, call_id, attempt, model, status_code,"
    " ok, streamed, input_tokens, cost_usd, duration_ms, trace_id, route, instance)"
    " VALUES (?, 'openai', 'chat', '/v1/chat/completions', 'POST', 'h', ?, 1, 'gpt-4o', 200, 1, 0, 10, ?, ?, ?, ?, ?)"
)


def seed(target: str) -> tuple[Engine, list[CallRecord]]:
    records = _records(random.Random(11))
    spanning = [r for r in records if r.trace_id == SPANNING]
    others = [r for r in records if r.trace_id != SPANNING]
    half = len(others) // 2
    parts = {"host-a:1": others[:half] + spanning[::2], "host-b:2": others[half:] + spanning[1::2]}
    for instance, part in parts.items():
        monitor = Monitor(target, instance=instance)
        try:
            insert(monitor, part)
        finally:
            monitor.close()
    engine = open_engine(target)
    # past the cursor (no writer to project them): an existing trace grows (earlier than its start, too), a new
    # trace appears, and a row with an infinite time stamp belongs to no range
    first = min(r.started_at for r in records if r.trace_id == "req-3")
    tail = [
        (first - 5.0, "t1", 0.5, 100.0, "req-3", "/chat", "late"),
        (T0 + DAY, "t2", None, None, "tail-new", None, "late"),
        (T0 + DAY + 1, "t3", 0.25, 40.0, "tail-new", None, "late"),
        (math.inf, "t4", 1.0, 1.0, "tail-new", None, "late"),
    ]
    engine.write(lambda conn: conn.executemany(TAIL, tail))
    return engine, records


@pytest.fixture
def seeded(store_target: str) -> Iterator[tuple[Engine, list[CallRecord]]]:
    engine, records = seed(store_target)
    yield engine, records
    engine.close()


def filter_sets() -> list[Filters]:
    whole = {"since": WHOLE.since, "until": WHOLE.until}
    return [
        WHOLE,
        Filters(since=T0 + DAY, until=T0 + 3 * DAY),
        Filters(**whole, route="/chat"),
        Filters(**whole, user="u2"),
        Filters(**whole, provider="anthropic"),
        Filters(**whole, model="gpt-4o-mini"),
        Filters(**whole, ok=False),
        Filters(**whole, tag=("session", "s-1")),
        Filters(**whole, tool="get_weather"),
        Filters(**whole, tool="search", route="/search"),
        Filters(**whole, instance="host-b:2"),
        Filters(**whole, q="server"),
        Filters(**whole, tool="'; DROP TABLE calls; --"),
    ]


def answers(traces: Traces) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, f in enumerate(filter_sets()):
        for sort in TRACE_SORTS:
            for descending in (True, False):
                out[f"{n}/{sort}/{descending}"] = traces.list(f, sort=sort, descending=descending, limit=25, offset=2)
    out["deep"] = traces.list(WHOLE, limit=1000, offset=150)
    out["past"] = traces.list(WHOLE, offset=10**6)
    out["get"] = [traces.get(t) for t in ("req-3", "tail-new", SPANNING, *HOSTILE_IDS, "nope")]
    out["session"] = [traces.session(s) for s in ("s-1", "séance", "none")]
    out["session_filtered"] = traces.session("s-1", Filters(since=T0, until=T0 + 2 * DAY, provider="openai"))
    return out


def canon(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    return value


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in a if canon(a[k]) != canon(b[k])][:8]


def test_the_projection_answers_what_raw_rows_answer_projected_or_not(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, _ = seeded
    raw = answers(Traces(engine, use_rollups=False))
    assert Traces(engine).pending()
    assert diff(answers(Traces(engine)), raw) == []
    assert not projections.catch_up(engine).behind
    assert not Traces(engine).pending()
    assert diff(answers(Traces(engine)), raw) == []
    assert raw["0/time/True"][1] > 150 and raw["8/time/True"][1] > 0 and raw["12/time/True"] == ([], 0)


def test_figures_of_a_trace_are_exact(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, records = seeded
    projections.catch_up(engine)
    traces = Traces(engine)
    rows, total = traces.list(WHOLE, limit=1000)
    assert total == len({r.trace_id for r in records if r.trace_id}) + 1  # + "tail-new"
    by_id = {r["trace_id"]: r for r in rows}
    for trace_id in (SPANNING, "run-7", LONG_ID):
        mine = [r for r in records if r.trace_id == trace_id]
        row = by_id[trace_id]
        assert canon(row) == canon(traces.get(trace_id)["trace"])
        assert row["attempts"] == len(mine)
        assert row["calls"] == len({r.call_id for r in mine})
        assert row["errors"] == sum(1 for r in mine if not r.ok)
        assert row["started_at"] == min(r.started_at for r in mine)
        ends = [r.started_at + (r.duration_ms or 0) / 1000 for r in mine]
        assert row["duration_ms"] == pytest.approx((max(ends) - row["started_at"]) * 1000)
        costs = [r.cost_usd for r in mine if r.cost_usd is not None]
        assert row["cost_usd"] == (pytest.approx(sum(costs)) if costs else None)
        unpriced = [r for r in mine if r.cost_usd is None and (r.input_tokens or r.output_tokens) is not None]
        assert row["cost_unknown"] == len(unpriced)
        counts = [r.tool_call_count for r in mine if r.tool_call_count is not None]
        assert row["tool_calls"] == (sum(counts) if counts else None)
        assert row["providers"] == sorted({r.provider for r in mine})
        assert row["models"] == sorted({r.model for r in mine if r.model})
        durations = [r.duration_ms for r in mine if r.duration_ms is not None]
        assert row["llm_ms"] == (pytest.approx(sum(durations)) if durations else None)
    spanning = by_id[SPANNING]
    assert spanning["instance"] == "host-a:1" and spanning["kind"] == "request"
    assert spanning["name"] == f"{spanning['inbound_method']} {spanning['route']}"
    assert by_id["run-7"]["kind"] == "run" and by_id["run-7"]["name"] in ("agent", "nightly ✓")
    assert by_id["tail-new"]["name"] == "tail-new" and by_id["tail-new"]["calls"] == 2  # the inf row is in none
    # both instances' calls are in the spanning trace and in the instance filter
    both = {traces.list(Filters(**_range(), instance=i), limit=1000)[0].__len__() > 0 for i in ("host-a:1", "host-b:2")}
    assert both == {True}
    ids_b = {r["trace_id"] for r in traces.list(Filters(**_range(), instance="host-b:2"), limit=1000)[0]}
    assert SPANNING in ids_b


def _range() -> dict[str, float | None]:
    return {"since": WHOLE.since, "until": WHOLE.until}


def test_every_sort_orders_its_key_with_unknowns_last(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, _ = seeded
    traces = Traces(engine)
    keys = {"time": "started_at", "cost": "cost_usd", "duration": "duration_ms", "calls": "calls",
            "tokens": "total_tokens", "llm_time": "llm_ms"}  # fmt: skip
    for sort, key in keys.items():
        for descending in (True, False):
            rows, total = traces.list(WHOLE, sort=sort, descending=descending, limit=1000)
            assert len(rows) == total
            values = [r[key] for r in rows]
            known = [v for v in values if v is not None]
            # sums of floats may differ in their last bit between the sort and the select (order of addition)
            pairs = itertools.pairwise(known)
            assert all((a >= b - 1e-9) if descending else (a <= b + 1e-9) for a, b in pairs), sort
            assert values[len(known) :] == [None] * (len(values) - len(known))
    pages = [traces.list(WHOLE, sort="cost", limit=40, offset=o)[0] for o in range(0, 400, 40)]
    flat = [r["trace_id"] for p in pages for r in p]
    assert flat == [r["trace_id"] for r in traces.list(WHOLE, sort="cost", limit=1000)[0]]
    assert len(flat) == len(set(flat))
    with pytest.raises(ValueError, match="cannot sort"):
        traces.list(WHOLE, sort="id; DROP TABLE calls")


def test_filters_select_traces_with_a_matching_call(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, records = seeded
    projections.catch_up(engine)
    traces = Traces(engine)

    def ids(**kw: Any) -> set[str]:
        return {r["trace_id"] for r in traces.list(Filters(**_range(), **kw), limit=1000)[0]}

    def expected(pred: Any) -> set[str]:
        return {r.trace_id for r in records if r.trace_id and pred(r)}

    assert ids(tool="get_weather") == expected(lambda r: "get_weather" in (r.tool_names or []))
    assert ids(tool="search") == expected(lambda r: "search" in (r.tool_names or []))
    assert ids(ok=False) == expected(lambda r: not r.ok)
    assert ids(provider="anthropic") == expected(lambda r: r.provider == "anthropic")
    assert ids(tag=("session", "séance")) == expected(lambda r: r.tags.get("session") == "séance")
    assert ids(route="/Ä") == expected(lambda r: r.route == "/Ä")
    assert ids(user="u1") == expected(lambda r: r.user == "u1")
    assert ids(tool="get") == set() and ids(tool="") == set()


def test_get_lists_the_calls_with_offsets_and_attempts(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, records = seeded
    traces = Traces(engine)
    for trace_id in ("run-3", LONG_ID, "трасса-✓ 😀"):
        got = traces.get(trace_id)
        mine = sorted((r for r in records if r.trace_id == trace_id), key=lambda r: r.started_at)
        assert got is not None and not got["truncated"]
        calls = got["calls"]
        assert [c["call_id"] for c in calls] == [r.call_id for r in mine]
        assert [c["attempt"] for c in calls] == [r.attempt for r in mine]
        assert calls[0]["offset_ms"] == 0.0
        assert [c["offset_ms"] for c in calls] == pytest.approx(
            [(r.started_at - mine[0].started_at) * 1000 for r in mine]
        )
        for c, r in zip(calls, mine, strict=True):
            assert isinstance(c["id"], int) and c["span_name"] == r.span_name and c["trace_id"] == trace_id
            assert c["tool_call_count"] == r.tool_call_count
            assert c["tool_names"] == (r.tool_names if r.tool_call_count is not None else None)
    for unknown in ("nope", "", "x" * 20_000, "\udc00", "a\x00b", "%", "' OR 1=1 --"):
        assert traces.get(unknown) is None
        assert traces.session(unknown) is None
    assert traces.get(None) is None  # type: ignore[arg-type]


def test_get_caps_the_calls_and_says_so(store_target: str) -> None:
    monitor = Monitor(store_target)
    try:
        big = [
            CallRecord(
                started_at=T0 + i,
                provider="openai",
                operation="chat",
                endpoint="/v1/chat/completions",
                status_code=200,
                trace_id="big",
                call_id=f"c{i}",
                cost_usd=0.5,
            )
            for i in range(1003)
        ]
        insert(monitor, big)
        got = monitor.store.traces.get("big")
        assert got is not None and got["truncated"] and len(got["calls"]) == 1000
        assert got["trace"]["calls"] == 1003 and got["trace"]["cost_usd"] == pytest.approx(501.5)
        assert got["calls"][-1]["offset_ms"] == pytest.approx(999_000)
    finally:
        monitor.close()


def test_session_totals_its_calls_across_traces(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, records = seeded
    got = Traces(engine).session("s-1")
    assert got is not None
    mine = [r for r in records if r.tags.get("session") == "s-1"]
    s = got["session"]
    assert s["id"] == "s-1" and s["attempts"] == len(mine) == len(got["calls"])
    assert s["traces"] == len({r.trace_id for r in mine if r.trace_id}) == len(got["traces"])
    assert s["started_at"] == min(r.started_at for r in mine)
    assert s["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in mine))
    assert [c["started_at"] for c in got["calls"]] == sorted(r.started_at for r in mine)
    assert any(c["trace_id"] is None for c in got["calls"])  # calls outside a trace belong to the session too
    starts = [t["started_at"] for t in got["traces"]]
    assert starts == sorted(starts)
    narrowed = Traces(engine).session("s-1", Filters(provider="anthropic"))
    assert narrowed is not None
    assert narrowed["session"]["attempts"] == sum(1 for r in mine if r.provider == "anthropic")


def test_unpriced_tool_requests_and_the_tool_filter(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, records = seeded
    analytics = Analytics(engine)
    unpriced: dict[tuple[str, str | None], int] = {}
    for r in records:
        if r.cost_usd is None and (r.input_tokens is not None or r.output_tokens is not None):
            unpriced[(r.provider, r.model)] = unpriced.get((r.provider, r.model), 0) + 1
    unpriced[("openai", "gpt-4o")] = 1  # of the tail rows in the range (past the cursor), one has no cost
    expected = sorted(
        ({"provider": p, "model": m, "calls": n} for (p, m), n in unpriced.items()),
        key=lambda r: (-r["calls"], r["provider"], r["model"] or ""),
    )
    assert analytics.unpriced(WHOLE) == expected == Analytics(engine, use_rollups=False).unpriced(WHOLE)
    projections.catch_up(engine)
    assert analytics.unpriced(WHOLE) == expected
    failed_only = Filters(**_range(), ok=False)
    assert analytics.unpriced(failed_only) == []  # failed calls have no tokens: no price is missing for them
    tools = sum(1 for r in records if (r.tool_call_count or 0) > 0)
    assert analytics.totals(WHOLE)["tool_requests"] == tools
    assert Analytics(engine, use_rollups=False).totals(WHOLE)["tool_requests"] == tools
    assert analytics.totals(Filters(since=T0 - 10 * DAY, until=T0 - 9 * DAY))["tool_requests"] == 0
    weather = sum(1 for r in records if "get_weather" in (r.tool_names or []))
    assert analytics.count(Filters(**_range(), tool="get_weather")) == weather
    page = analytics.page(Filters(**_range(), tool="search"), limit=1000)
    assert len(page) == sum(1 for r in records if "search" in (r.tool_names or []))
    assert all("search" in row["tool_names"] for row in page)


def test_api_columns(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, records = seeded
    queries = Queries(engine)
    items, _ = queries.requests(WHOLE, limit=1000)
    by_call = {(r.call_id, r.attempt): r for r in records}
    seen = set()
    for item in items:
        record = by_call.get((item["call_id"], item["attempt"]))
        if record is None:
            continue
        assert item["trace_id"] == record.trace_id and item["trace_name"] == record.trace_name
        assert item["span_name"] == record.span_name and item["tool_call_count"] == record.tool_call_count
        if record.tool_call_count == 0:
            assert item["tool_names"] == []
        elif record.tool_call_count is None:
            assert item["tool_names"] is None
        else:
            assert item["tool_names"] == record.tool_names
        seen.add(record.tool_call_count)
        detail = queries.request(item["id"])
        assert detail is not None and "tool_arguments" in detail and "tool_arguments" not in item
    assert seen == {None, 0, 1, 2}
    exported = next(iter(Analytics(engine).export(Filters(**_range(), tool="search"), cap=1)))
    assert "search" in exported["tool_names"]


def test_tool_arguments_are_stored_and_shown_in_the_detail(store_target: str) -> None:
    monitor = Monitor(store_target)
    try:
        arguments = json.dumps([{"name": "get_weather", "arguments": '{"city": "Zürich"}'}])
        record = CallRecord(
            started_at=T0,
            provider="openai",
            operation="chat",
            endpoint="/v1/chat/completions",
            status_code=200,
            tool_call_count=1,
            tool_names=["get_weather"],
            tool_arguments=arguments,
        )
        insert(monitor, [record])
        items, total = monitor.store.queries.requests(Filters(tool="get_weather"))
        assert total == 1 and items[0]["tool_names"] == ["get_weather"]
        detail = monitor.store.queries.request(items[0]["id"])
        assert detail is not None and json.loads(detail["tool_arguments"])[0]["arguments"] == '{"city": "Zürich"}'
    finally:
        monitor.close()


def test_foreign_tool_names_never_raise(store_target: str) -> None:
    engine = open_engine(store_target)
    try:
        sql = (
            "INSERT INTO calls (started_at, provider, operation, ok, streamed, tool_call_count, tool_names, trace_id)"
            " VALUES (?, 'p', 'chat', 1, 0, ?, ?, 't')"
        )
        bad = [(T0, 1, "not json"), (T0, 1, '{"a": 1}'), (T0, 1, "[1, null]"), (T0, 2, '["x", 3]'), (T0, 0, None)]
        engine.write(lambda conn: conn.executemany(sql, bad))
        analytics, queries = Analytics(engine), Queries(engine)
        items, _ = queries.requests(Filters())
        assert sorted(map(repr, (i["tool_names"] for i in items))) == sorted(map(repr, [None, None, [], ["x"], []]))
        assert analytics.count(Filters(since=0, until=T0 + 1, tool="x")) == 1
        assert analytics.count(Filters(since=0, until=T0 + 1, tool="3")) == 0  # a number is no tool name
        assert Traces(engine).get("t")["trace"]["tool_calls"] == 5  # type: ignore[index]
        projections.catch_up(engine)
        assert Traces(engine).list(Filters(tool="x"))[1] == 1
    finally:
        engine.close()


def test_the_migration_backfill_equals_the_projection(seeded: tuple[Engine, list[CallRecord]]) -> None:
    """Migration 7 fills the trace projection and ``unpriced`` for the calls projected before it: the same
    figures the writer's pass gives."""
    engine, _ = seeded
    projections.catch_up(engine)
    before = answers(Traces(engine))
    unpriced = Analytics(engine).unpriced(WHOLE)

    def reset(conn: Any) -> None:
        conn.execute("DELETE FROM trace_totals")
        for grain in ("hour", "day"):
            conn.execute(f"UPDATE rollup_calls_{grain} SET unpriced = 0")
        for sql in projections.backfill_v7(engine.dialect):
            conn.execute(sql)

    engine.write(reset)
    assert diff(answers(Traces(engine)), before) == []
    assert Analytics(engine).unpriced(WHOLE) == unpriced


def test_an_old_sqlite_database_joins_its_requests_into_traces(tmp_path: Path) -> None:
    import sqlite3

    from llm_monitor_mw.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:6]:
        step(conn)
    conn.execute("PRAGMA user_version = 6")
    conn.executemany(
        "INSERT INTO calls (started_at, provider, operation, ok, streamed, inbound_request_id, route, inbound_method,"
        " input_tokens, cost_usd, call_id, attempt) VALUES (?, 'openai', 'chat', 1, 0, ?, '/chat', 'POST', 5, ?, ?, 1)",
        [(T0 + i, f"rq{i % 3}", None if i % 2 else 0.01, f"c{i}") for i in range(9)],
    )
    conn.close()
    engine = open_engine(path)
    try:
        engine.ensure()
        projections.catch_up(engine)
        rows, total = Traces(engine).list(Filters())
        assert total == 3 and {r["name"] for r in rows} == {"POST /chat"}
        assert {r["trace_id"]: r["calls"] for r in rows} == {"rq0": 3, "rq1": 3, "rq2": 3}
        assert Analytics(engine).unpriced(Filters(since=0, until=T0 + 100)) == [
            {"provider": "openai", "model": None, "calls": 4}
        ]
    finally:
        engine.close()


def test_retention_prunes_the_traces_with_their_calls(seeded: tuple[Engine, list[CallRecord]]) -> None:
    engine, _ = seeded
    projections.catch_up(engine)
    cutoff = T0 + 2 * DAY
    due = retention.prune(engine, cutoff, dry_run=True)
    result = retention.prune(engine, cutoff)
    assert result.rollup_rows == due.rollup_rows and result.calls == due.calls > 0
    rows, total = Traces(engine).list(Filters(), limit=1000)
    assert total == len(rows) > 0 and min(r["started_at"] for r in rows) >= cutoff
    assert Traces(engine).list(Filters(until=cutoff))[1] == 0


def test_params_tool() -> None:
    assert parse_dimensions({"tool": "get_weather"})["tool"] == "get_weather"
    assert parse_dimensions({"tool": ""})["tool"] is None and parse_dimensions({})["tool"] is None
    for bad in ("x" * 201, "a\x00b", "\udc00"):
        with pytest.raises(ParamError, match="tool"):
            parse_dimensions({"tool": bad})
