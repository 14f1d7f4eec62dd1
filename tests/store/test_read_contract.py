"""The read side's contract, on both engines: every read answers the same on SQLite and on PostgreSQL, and the
same from the roll-ups as from raw rows, whether the rows are projected yet or not.

Rows go in through the real writer (which projects them in its transactions), from two instances; hostile rows
(2**63-1 token counts, infinite latencies, tags that are not a JSON object) go in straight through SQL, as an old
or foreign writer would leave them: past the projection cursor until a catch-up projects them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import projections
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.engine.base import Engine
from llm_monitor_mw.store.read import Analytics, Filters, Queries, parse_tag
from llm_monitor_mw.store.read.aggregates import DIMENSIONS
from llm_monitor_mw.store.read.calls import SORTABLE
from llm_monitor_mw.store.read.plan import DAY, HOUR
from tests.seed import insert

T0 = 1_780_000_000.0 + 1234.5  # not aligned to hours or days
SPAN = 5 * DAY
BIG = 2**63 - 1
INF = math.inf


def _records(n: int, rng: random.Random) -> list[CallRecord]:
    out = []
    for i in range(n):
        ok = rng.random() > 0.15
        out.append(
            CallRecord(
                started_at=T0 + rng.uniform(0, SPAN),
                provider=rng.choice(["openai", "anthropic", "gemini"]),
                operation="chat",
                endpoint="/v1/chat/completions",
                request_model=rng.choice(["a", "b", "Zeta", "émoji-✓", None]),
                call_id=f"c{i // 2}",
                attempt=1 + i % 2,
                status_code=200 if ok else rng.choice([429, 500, None]),
                error_type=None if ok else rng.choice(["rate_limit_error", "Timeout", None]),
                error=None if ok else rng.choice(["Too Many", "50% off_limit", "boom"]),
                input_tokens=rng.choice([10, 250, None]),
                output_tokens=rng.choice([5, None]),
                total_tokens=rng.choice([15, 300, None]),
                cached_tokens=rng.choice([0, 3]),
                cost_usd=rng.choice([0.001, 0.0123, 1e-7, None]),
                duration_ms=rng.choice([rng.lognormvariate(6, 1), None, 0.0]),
                ttft_ms=rng.choice([None, rng.uniform(10, 500)]),
                route=rng.choice([None, "/a", "/b", "/Ä"]),
                user=rng.choice([None, "u1", "u2", "U3"]),
                tags=rng.choice([{}, {"feature": "x"}, {"feature": "y", "team": "z"}, {"ключ": "значение"}]),
            )
        )
    return out


HOSTILE = [
    # (input_tokens, output_tokens, total_tokens, cost_usd, duration_ms, ttft_ms, tags)
    (BIG, BIG, BIG, INF, INF, -INF, '{"feature":"x"}'),
    (BIG, 1, BIG, -INF, -INF, INF, '{"feature":null}'),
    (-(2**63), 0, -(2**63), 1e308, 1.7e308, 1e308, "not json"),
    (BIG, None, None, 1e308, 1.7e308, None, "[1, 2]"),
    (None, None, None, None, 5.0, None, "5"),
]


def write_hostile(engine: Engine, when: list[float]) -> None:
    """The :data:`HOSTILE` rows at each time of ``when``, inserted with SQL (no writer, no projection)."""
    sql = (
        "INSERT INTO calls (started_at, provider, operation, endpoint, method, host, call_id, attempt, model,"
        " response_model, status_code, ok, error_type, streamed, input_tokens, output_tokens, total_tokens,"
        ' cached_tokens, cost_usd, duration_ms, ttft_ms, retry_after_s, tags, route, "user", instance)'
        " VALUES (?, 'openai', 'chat', '/v1/chat/completions', 'POST', 'h', 'x', 1, 'a', 'a', 500, 0, 'server', 0,"
        " ?, ?, ?, ?, ?, ?, ?, ?, ?, '/chat', 'mallory', 'foreign')"
    )
    rows = [(ts, i, o, t, i, c, d, tt, INF, tags) for ts in when for (i, o, t, c, d, tt, tags) in HOSTILE]
    engine.write(lambda conn: conn.executemany(sql, rows))


def seed(target: str) -> Engine:
    """The same rows on any engine: two instances through the writer, then, with no writer running (none may
    project them), rows past the cursor. Returns an engine of its own on ``target``."""
    records = _records(900, random.Random(7))
    for instance, part in (("host-a:1", records[:500]), ("host-b:2", records[500:])):
        monitor = Monitor(target, instance=instance)
        try:
            insert(monitor, part)
        finally:
            monitor.close()
    engine = open_engine(target)
    write_hostile(engine, [T0 + 2 * DAY + 17, T0 + 2 * DAY + 18, T0 + SPAN - 60, T0 + 3 * HOUR])
    return engine


def filter_sets() -> list[Filters]:
    """Ranges answered from raw rows only, from raw edges + hours + days, the whole history; every filter."""
    whole = {"since": T0 - DAY, "until": T0 + SPAN + DAY}
    return [
        Filters(since=T0 + DAY + 100, until=T0 + DAY + 2 * HOUR),
        Filters(since=T0 + 0.5 * HOUR, until=T0 + 4 * DAY + 7 * HOUR + 12),
        Filters(**whole),
        Filters(**whole, provider="openai"),
        Filters(**whole, provider="openai", model="a"),
        Filters(**whole, ok=False),
        Filters(**whole, ok=True),
        Filters(**whole, route="/a"),
        Filters(**whole, user="U3"),
        Filters(**whole, tag=("feature", "x")),
        Filters(**whole, tag=("ключ", "значение")),
        Filters(**whole, q="too many"),
        Filters(**whole, q="50%"),
        Filters(**whole, q="_"),
        Filters(**whole, instance="host-b:2"),
        Filters(**whole, instance="foreign"),
        Filters(**whole, instance="host-a:1", ok=False, provider="gemini"),
    ]


def canon(value: Any) -> Any:
    """``value`` comparable across engines: floats to 10 significant digits (sums may differ in the last bits)."""
    if isinstance(value, float):
        return value if not math.isfinite(value) else float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    return value


def answers(analytics: Analytics, queries: Queries) -> dict[str, Any]:
    """Every read of the read side, over :func:`filter_sets`."""
    out: dict[str, Any] = {"has_calls": analytics.has_calls(), "summary_all": analytics.summary(Filters())}
    for n, f in enumerate(filter_sets()):
        for step in (0, HOUR, DAY):
            r = analytics.report(f, step, model_latency=True)
            out[f"{n}/report/{step}"] = [r.totals, r.series, r.by_model, r.by_provider]
        out[f"{n}/cube"] = analytics.cube(f, HOUR, ("provider", "model"))
        out[f"{n}/hist"] = analytics.histograms(f, DAY)
        out[f"{n}/summary"] = analytics.summary(f)
        out[f"{n}/count"] = analytics.count(f)
        for dim in DIMENSIONS:
            for order in ("cost", "requests", "errors"):
                out[f"{n}/dim/{dim}/{order}"] = analytics.by_dim(f, dim, order=order, limit=7)
            out[f"{n}/dim/{dim}/errors_only"] = analytics.by_dim(f, dim, errors_only=True)
        for sort in SORTABLE:
            for descending in (True, False):
                out[f"{n}/page/{sort}/{descending}"] = [
                    r["id"] for r in analytics.page(f, sort=sort, descending=descending, limit=40, offset=3)
                ]
        out[f"{n}/export"] = list(analytics.export(f, sort="cost", descending=False, cap=300))
        out[f"{n}/errors"] = analytics.latest_errors(f, 10)
        out[f"{n}/facets"] = analytics.facets(f)
        items, total = queries.requests(f, limit=30, offset=5)
        out[f"{n}/requests"] = [items, total]
    out["attempts"] = [analytics.attempts(f"c{i}", T0 + SPAN / 2, window=SPAN) for i in (0, 1, 77)]
    out["request"] = [queries.request(i) for i in (1, 2, 450, 10**9)]
    return out


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys whose answers differ (the first few), for a readable failure."""
    return [k for k in a if canon(a[k]) != canon(b.get(k))][:8]


@pytest.fixture
def seeded(store_target: str) -> Iterator[Engine]:
    engine = seed(store_target)
    yield engine
    engine.close()


def test_rollups_answer_what_raw_rows_answer_projected_or_not(seeded: Engine) -> None:
    engine = seeded
    raw = answers(Analytics(engine, use_rollups=False), Queries(engine))
    assert raw["has_calls"] and raw["2/count"] == 900 + 4 * len(HOSTILE)
    assert Analytics(engine).pending(), "the hostile rows should be past the cursor before the catch-up"
    partly = answers(Analytics(engine), Queries(engine))
    assert diff(partly, raw) == []
    progress = projections.catch_up(engine)
    assert not progress.behind and not Analytics(engine).pending()
    assert diff(answers(Analytics(engine), Queries(engine)), raw) == []


def test_both_engines_answer_alike(tmp_path: Path, pg_url: str) -> None:
    results = []
    for target in (str(tmp_path / "calls.db"), pg_url):
        engine = seed(target)
        try:
            results.append(answers(Analytics(engine), Queries(engine)))
        finally:
            engine.close()
    sqlite, postgres = results
    assert diff(sqlite, postgres) == []


def test_answers_hold_exact_figures(seeded: Engine) -> None:
    """Not just "alike": the figures are the right ones (hostile values left out as unknown)."""
    records = _records(900, random.Random(7))
    analytics = Analytics(seeded)
    everything = Filters(since=T0 - DAY, until=T0 + SPAN + DAY)
    totals = analytics.totals(everything)
    assert totals["requests"] == 900 + 4 * len(HOSTILE)
    assert totals["input_tokens"] == sum(r.input_tokens or 0 for r in records)
    assert isinstance(totals["input_tokens"], int) and isinstance(totals["requests"], int)
    assert totals["output_tokens"] == sum(r.output_tokens or 0 for r in records) + 4  # the hostile 1 and 0
    assert totals["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in records))
    assert totals["duration_n"] == sum(1 for r in records if r.duration_ms is not None) + 4  # the 5.0 ms rows
    by_instance = {i: analytics.count(Filters(**vars_of(everything), instance=i)) for i in ("host-a:1", "host-b:2")}
    assert by_instance == {"host-a:1": 500, "host-b:2": 400}
    tagged = analytics.by_dim(everything, "tag", order="requests", limit=20)
    expected = sum(1 for r in records if r.tags.get("feature") == "x") + 4  # + the hostile '{"feature":"x"}'
    assert {r["value"]: r["requests"] for r in tagged}["feature:x"] == expected
    assert analytics.count(Filters(**vars_of(everything), tag=("feature", "x"))) == expected
    q = analytics.count(Filters(**vars_of(everything), q="50%"))
    assert q == sum(1 for r in records if r.error and "50%" in r.error)
    page = analytics.page(everything, sort="duration", descending=True, limit=1000)
    durations = [r["duration_ms"] for r in page]
    known = [d for d in durations if d is not None]
    nulls = sum(1 for r in records if r.duration_ms is None)
    assert known == sorted(known, reverse=True) and durations[-nulls:] == [None] * nulls  # NULLs last
    assert durations[:4] == [None] * 4 and known[0] == 1.7e308  # the stored inf first, shown as unknown
    ascending = [r["duration_ms"] for r in analytics.page(everything, sort="duration", descending=False, limit=1000)]
    assert ascending[:4] == [None] * 4 and ascending[-nulls:] == [None] * nulls  # -inf first, NULLs last again
    models = [r["model"] for r in analytics.page(everything, sort="model", descending=False, limit=1000)]
    named = [m for m in models if m is not None]
    assert named == sorted(named) and models[len(named) :] == [None] * (len(models) - len(named))  # code point order


def vars_of(f: Filters) -> dict[str, Any]:
    return {"since": f.since, "until": f.until}


def test_an_empty_store_answers_zeros(store_target: str) -> None:
    monitor = Monitor(store_target)
    try:
        analytics, queries = Analytics(monitor.db), Queries(monitor.db)
        f = Filters(since=T0, until=T0 + 3 * DAY)
        assert not analytics.has_calls()
        assert analytics.count(f) == 0 and analytics.page(f) == [] and list(analytics.export(f)) == []
        totals = analytics.totals(f)
        assert totals["requests"] == 0 and totals["latency_p50_ms"] is None and totals["error_rate"] is None
        assert analytics.summary(Filters())["requests"] == 0
        assert all(analytics.by_dim(f, dim) == [] for dim in DIMENSIONS)
        assert analytics.facets(f) == {"providers": [], "models": [], "routes": [], "users": []}
        assert queries.requests(Filters()) == ([], 0) and queries.request(1) is None
        assert len(analytics.report(f, HOUR).series) == 3 * 24 + 1
    finally:
        monitor.close()


def test_reads_never_write(seeded: Engine) -> None:
    """A read leaves the roll-ups and the cursor as they were (the projection is the writer's job)."""
    engine = seeded

    def state() -> tuple[Any, ...]:
        conn = engine.connection()
        cursor = conn.execute("SELECT last_id FROM rollup_state WHERE name = 'calls'").fetchall()
        rolled = conn.execute("SELECT count(*), sum(requests) FROM rollup_calls_hour").fetchone()
        return (cursor, tuple(rolled))

    before = state()
    answers(Analytics(engine), Queries(engine))
    assert state() == before


def test_one_snapshot_per_read(store_target: str, seeded: Engine) -> None:
    """Rows committed while a read runs do not enter it halfway (the cursor and the sums are read together)."""
    engine = seeded
    analytics = Analytics(engine)
    everything = Filters(since=T0 - DAY, until=T0 + SPAN + DAY)
    with analytics.reading():
        before = analytics.count(everything)
        other = Monitor(store_target, instance="late")
        try:
            insert(other, _records(10, random.Random(1)))
        finally:
            other.close()
        assert analytics.count(everything) == before
        assert analytics.totals(everything)["requests"] == before
    assert analytics.count(everything) == before + 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [("feature:chat", ("feature", "chat")), (" k : v:w ", ("k", "v:w")), ("k:", ("k", ""))],
)
def test_parse_tag(text: str, expected: tuple[str, str]) -> None:
    assert parse_tag(text) == expected


@pytest.mark.parametrize("text", ["nocolon", ":v", " :v"])
def test_parse_tag_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="key:value"):
        parse_tag(text)


def test_filters_are_booleans_on_both_dialects() -> None:
    from llm_monitor_mw.store.engine.base import Dialect, PostgresDialect

    for dialect in (Dialect(), PostgresDialect()):
        assert Filters().conditions(dialect=dialect) == ("1 = 1", [])
        assert Filters().where(dialect) == ("", [])
        cond, params = Filters(provider="p", user="u", instance="i", q="a_b").conditions(dialect=dialect)
        assert '"user" = ?' in cond and "instance = ?" in cond and params[-1] == "%a\\_b%"
        assert ("+provider" in cond) == (dialect.name == "sqlite")  # PostgreSQL has no unary + for text


def test_text_sorts_by_code_point_whatever_the_database_collation(tmp_path: Path, pg_server: Any) -> None:
    """A PostgreSQL database with a natural-language collation (ICU en-US: "a" < "B") still sorts text as SQLite
    does (by code point: "B" < "a"), so pages and breakdowns agree across engines."""
    import psycopg

    from tests.postgres_server import with_database

    name = f"icu_{random.randrange(10**9)}"
    try:
        with pg_server.admin() as conn:
            conn.execute(
                f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
    except psycopg.Error as exc:
        pytest.skip(f"no ICU collations on this server: {exc}")
    try:
        results = []
        for target in (str(tmp_path / "calls.db"), with_database(pg_server.base_dsn, name)):
            engine = seed(target)
            try:
                analytics = Analytics(engine)
                f = Filters(since=T0 - DAY, until=T0 + SPAN + DAY)
                pages = [
                    [r["id"] for r in analytics.page(f, sort=s, descending=d, limit=300)]
                    for s in ("model", "provider")
                    for d in (True, False)
                ]
                ties = [analytics.by_dim(f, dim, order="errors", limit=50) for dim in DIMENSIONS]
                results.append(canon([pages, ties]))
            finally:
                engine.close()
        assert results[0] == results[1]
    finally:
        pg_server.drop_database(name)
