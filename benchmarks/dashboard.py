"""How fast the dashboard answers at a million rows: ``python benchmarks/dashboard.py [--rows N] [--runs R]``.

Seeds N calls (default 1,000,000 over 30 days; inserted directly: ``executemany`` on SQLite, ``COPY`` on
PostgreSQL) into a temporary database, projects them (the roll-ups and counters, as the writer would have), then
prints server-side milliseconds (median of ``--runs``) for:

* the dashboard's queries answered from raw rows ("before") and from the roll-ups ("after"), and the one-off
  projection of the seeded rows (``projections.step`` in 20,000-row transactions, nobody else writing);
* each page and fragment, through the ASGI app in-process (query + template rendering, no network): the overview,
  requests log, request detail, Traces list (by time, cost and duration; by route, user and provider), one trace,
  one session, costs and errors;
* the JSON summary API (``api/summary``).

Target: <= 100 ms per page at 1M rows.

    python benchmarks/dashboard.py                                      # SQLite
    python benchmarks/dashboard.py --db postgresql://u:p@host/postgres  # PostgreSQL (a database is created)
    python benchmarks/dashboard.py --start-postgres                     # PostgreSQL on a throwaway cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import target, throwaway_postgres  # noqa: E402

from llm_monitor_mw import Monitor  # noqa: E402
from llm_monitor_mw.store import analytics, projections  # noqa: E402
from llm_monitor_mw.store.engine import open_engine  # noqa: E402
from llm_monitor_mw.store.queries import Filters  # noqa: E402
from llm_monitor_mw.store.schema import CALL_COLUMNS  # noqa: E402
from llm_monitor_mw.store.writer import insert_rows  # noqa: E402
from llm_monitor_mw.web.pages.view import step_for  # noqa: E402
from tests.browser.server import host_app  # noqa: E402

MODELS = [
    ("openai", "gpt-4o-mini", 0.15, 0.60, 900),
    ("openai", "gpt-4o", 2.50, 10.0, 2200),
    ("anthropic", "claude-sonnet-4-5", 3.0, 15.0, 3100),
    ("anthropic", "claude-haiku-4-5", 1.0, 5.0, 1100),
    ("gcp.gemini", "gemini-2.5-flash", 0.30, 2.50, 1300),
    ("gcp.gemini", "gemini-2.5-pro", 1.25, 10.0, 4000),
    ("mistral_ai", "mistral-large-latest", 2.0, 6.0, 1800),
    ("openai", "text-embedding-3-small", 0.02, 0.0, 160),
]
ROUTES = [f"/api/v1/feature-{i}" for i in range(20)]
USERS = [f"user-{i:04d}" for i in range(500)]
FEATURES = ["chat", "search", "summaries", "agent", "support", "classify", "extract", "translate"]


RUNS = ["nightly-eval", "support-agent", "ticket-classifier", "backfill", "code-review"]
TOOL_NAMES = ["search_docs", "lookup_order", "get_weather", "create_ticket", "send_reply"]
SESSIONS = 20_000
"""Conversations the chat routes' traces belong to (about five traces each at 1M calls)."""


def next_trace(rng: random.Random) -> tuple[int, dict[str, Any]]:
    """How many calls the next trace has, and what its calls share: 70 % inbound requests (trace id = request
    id, route, user; the first four routes are chats, each turn in a session), 20 % ``monitor.trace()`` runs, 10 %
    calls outside any trace."""
    calls = min(1 + int(rng.expovariate(0.6)), 40)  # 1 to 40 calls, 2.7 on average
    r = rng.random()
    if r < 0.7:
        tid = uuid.UUID(int=rng.getrandbits(128)).hex
        route = rng.randrange(len(ROUTES))
        return calls, {
            "trace_id": tid,
            "inbound_request_id": tid,
            "inbound_method": "POST",
            "route": ROUTES[route],
            "user": USERS[rng.randrange(len(USERS))] if rng.random() < 0.9 else None,
            "session": f"chat-{rng.randrange(SESSIONS)}" if route < 4 else None,
        }
    if r < 0.9:
        name = RUNS[rng.randrange(len(RUNS))]
        return calls, {"trace_id": uuid.UUID(int=rng.getrandbits(128)).hex, "trace_name": name}
    return 1, {}


def rows(n: int, *, now: float, days: float, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``n`` synthetic rows in :data:`CALL_COLUMNS` order, spread evenly over the last ``days``, grouped in traces
    of consecutive calls (see :func:`next_trace`); one call in ten asks for tools."""
    rng = random.Random(seed)
    span = days * 86400
    base = dict.fromkeys(CALL_COLUMNS)
    left, trace = 0, {}
    for i in range(n):
        if left == 0:
            left, trace = next_trace(rng)
        left -= 1
        provider, model, p_in, p_out, median = MODELS[rng.randrange(len(MODELS))]
        r = rng.random()
        status, error_type, error = 200, None, None
        if r < 0.03:
            status, error_type, error = 429, "rate_limit_error", "Rate limit reached for requests per min"
        elif r < 0.04:
            status, error_type, error = 500, "server_error", "The server had an error processing your request"
        inp = int(rng.lognormvariate(6.3, 0.9)) + 20
        out = int(rng.lognormvariate(5.0, 0.8)) + 5 if status == 200 else None
        cached = int(inp * 0.5) if r > 0.8 else 0
        streamed = r > 0.45
        duration = rng.lognormvariate(math.log(median), 0.5)
        tags = {"feature": FEATURES[rng.randrange(len(FEATURES))]}
        if trace.get("session"):
            tags["session"] = trace["session"]
        row = dict(base)
        row.update(
            started_at=now - span + span * (i + rng.random()) / n,
            provider=provider,
            operation="chat",
            endpoint="/v1/chat/completions",
            method="POST",
            host="api.example.com",
            call_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            attempt=1,
            request_model=model,
            response_model=model,
            model=model,
            status_code=status,
            ok=1 if status == 200 else 0,
            error_type=error_type,
            error=error,
            streamed=1 if streamed else 0,
            input_tokens=inp if status == 200 else None,
            output_tokens=out,
            total_tokens=inp + out if out is not None else None,
            cached_tokens=cached if status == 200 else None,
            cost_usd=(inp * p_in + (out or 0) * p_out) / 1e6 if status == 200 else None,
            duration_ms=duration,
            ttft_ms=duration * 0.3 if streamed and status == 200 else None,
            ttlt_ms=duration * 0.97 if streamed and status == 200 else None,
            route=trace.get("route"),
            user=trace.get("user"),
            inbound_method=trace.get("inbound_method"),
            inbound_request_id=trace.get("inbound_request_id"),
            trace_id=trace.get("trace_id"),
            trace_name=trace.get("trace_name"),
            tags=json.dumps(tags, separators=(",", ":")),
        )
        if status == 200 and rng.random() < 0.1:
            called = rng.sample(TOOL_NAMES, rng.choice((1, 1, 2)))
            row.update(tool_call_count=len(called), tool_names=json.dumps(called), finish_reason="tool_calls")
        elif status == 200:
            row.update(tool_call_count=0)
        yield tuple(row[c] for c in CALL_COLUMNS)


def seed(url: str, n: int, *, now: float, days: float) -> float:
    """Create the schema and insert ``n`` rows, unprojected (as an old database's); returns the seconds it took."""
    engine = open_engine(url)
    engine.ensure()
    start = time.perf_counter()
    batch: list[tuple[Any, ...]] = []
    for row in rows(n, now=now, days=days):
        batch.append(row)
        if len(batch) == 50_000:
            engine.write(lambda conn, b=batch: insert_rows(conn, b))
            batch = []
    if batch:
        engine.write(lambda conn, b=batch: insert_rows(conn, b))
    if engine.name == "sqlite":
        engine.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        engine.connection().execute("VACUUM ANALYZE calls")
    engine.close()
    return time.perf_counter() - start


def project_all(url: str) -> float:
    """Project every seeded row (roll-ups and counters) in 20,000-row transactions; returns the seconds."""
    engine = open_engine(url)
    projector = projections.Projector(engine, limit=20_000)
    start = time.perf_counter()
    while projections.step(engine, projector).behind:
        pass
    if engine.name == "postgresql":
        engine.connection().execute("ANALYZE")
    engine.close()
    return time.perf_counter() - start


def size_mib(url: str) -> float:
    engine = open_engine(url)
    try:
        if engine.name == "sqlite":
            return os.path.getsize(url) / 2**20
        return engine.connection().execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
    finally:
        engine.close()


def timed(fn: Callable[[], Any], runs: int) -> float:
    """Median wall milliseconds of ``runs`` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def overview_queries(a: analytics.Analytics, span: float, now: float) -> Callable[[], None]:
    """What the overview page asks of the store for a range of ``span`` seconds ending now."""

    def run() -> None:
        f = Filters(since=now - span, until=now)
        prev = Filters(since=now - 2 * span, until=now - span)
        a.report(f, step_for(span))
        a.totals(prev)  # cached for a minute by the pages; measured uncached here
        for dim in ("route", "user", "tag"):
            a.by_dim(f, dim)
        a.facets(f)

    return run


def trace_pages(client: TestClient) -> list[tuple[str, str, dict[str, str]]]:
    """The Traces list (as the page's sort links and filters ask for it), one trace and one session."""
    listing = json.loads(client.get("/m/api/traces", params={"since": "30d", "sort": "calls", "limit": 1}).text)
    big = listing["items"][0]  # the trace with the most calls
    chat = json.loads(client.get("/m/api/traces", params={"since": "30d", "route": ROUTES[0], "limit": 1}).text)
    session = chat["items"][0]["session"]
    return [
        ("traces 24h (default)", "/m/traces", {}),
        ("traces 30d", "/m/traces", {"range": "30d"}),
        ("traces 24h sorted by cost", "/m/traces", {"sort": "cost"}),
        ("traces 30d sorted by cost", "/m/traces", {"range": "30d", "sort": "cost"}),
        ("traces 30d sorted by duration", "/m/traces", {"range": "30d", "sort": "duration"}),
        ("traces 30d route filter", "/m/traces", {"range": "30d", "route": ROUTES[7]}),
        ("traces 30d user filter", "/m/traces", {"range": "30d", "user": "user-0042"}),
        ("traces 30d provider filter (per call)", "/m/traces", {"range": "30d", "provider": "anthropic"}),
        ("api/traces 30d sorted by cost", "/m/api/traces", {"since": "30d", "sort": "cost"}),
        (f"trace view ({big['calls']} calls)", f"/m/traces/{big['trace_id']}", {}),
        ("api/traces/{id}", f"/m/api/traces/{big['trace_id']}", {}),
        ("session view", f"/m/sessions/{session}", {}),
        ("api/sessions/{id}", f"/m/api/sessions/{session}", {}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", help="a postgresql:// URL: measure PostgreSQL (a database is created for the run)")
    parser.add_argument("--start-postgres", action="store_true", help="measure PostgreSQL on a throwaway cluster")
    args = parser.parse_args()
    if args.db and args.start_postgres:
        parser.error("give --db or --start-postgres, not both")
    engine = "postgresql" if args.db or args.start_postgres else "sqlite"
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_postgres() if args.start_postgres else contextlib.nullcontext(args.db) as base_url,
        target(engine, Path(tmp), base_url, "dashboard") as url,
    ):
        run(url, engine, args)


def run(url: str, engine: str, args: argparse.Namespace) -> None:
    now = time.time()
    seconds = seed(url, args.rows, now=now, days=args.days)
    size = size_mib(url)
    version = f"SQLite {sqlite3.sqlite_version}"
    if engine == "postgresql":
        probe = open_engine(url)
        version = "PostgreSQL " + probe.connection().execute("SHOW server_version").fetchone()[0]
        probe.close()
    print(f"llm-monitor-mw dashboard benchmark — Python {platform.python_version()}, {version}, {os.cpu_count()} CPUs")
    print(
        f"seeded {args.rows:,} calls over {args.days:g} days in {seconds:.1f} s ({size:,.0f} MiB before the "
        f"projections); median of {args.runs} runs after a warm-up; load average {os.getloadavg()[0]:.2f}\n"
    )
    monitor = Monitor(url)
    store_engine = monitor.store.engine
    raw = analytics.Analytics(store_engine, use_rollups=False)
    results: list[tuple[str, float]] = []
    for label, span in (("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0)):
        start = time.perf_counter()  # one cold run: these take seconds
        overview_queries(raw, span, now)()
        results.append((f"overview queries {label}, raw rows (before)", (time.perf_counter() - start) * 1000))
    build = project_all(url) * 1000
    results.append((f"projection of the {args.rows:,} seeded rows (once; the writer does it on write)", build))
    rolled = analytics.Analytics(store_engine)
    for label, span in (("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0)):
        results.append(
            (f"overview queries {label}, roll-ups (after)", timed(overview_queries(rolled, span, now), args.runs))
        )
    print("| store queries | ms |\n|---|---:|")
    for label, ms in results:
        print(f"| {label} | {ms:,.1f} |")

    with TestClient(host_app(monitor, "/m")) as client:
        first = client.get("/m/requests.json", params={"range": "1h", "limit": 1})
        some_id = json.loads(first.text)[0]["id"] if first.status_code == 200 and first.text.strip() != "[]" else 1
        pages = [
            ("overview 24h (full page)", "/m/", {}),
            ("overview 7d (full page)", "/m/", {"range": "7d"}),
            ("overview 30d (full page)", "/m/", {"range": "30d"}),
            ("overview 90d (full page)", "/m/", {"range": "90d"}),
            ("fragment overview/kpis 24h", "/m/fragments/overview/kpis", {}),
            ("fragment overview/charts 24h", "/m/fragments/overview/charts", {}),
            ("fragment overview/top 24h", "/m/fragments/overview/top", {}),
            ("overview 24h, provider+model filter", "/m/", {"provider": "openai", "model": "gpt-4o"}),
            ("requests first page 24h", "/m/requests", {}),
            ("requests first page 30d", "/m/requests", {"range": "30d"}),
            ("requests deep page 30d (offset 10,000)", "/m/requests", {"range": "30d", "offset": "10000"}),
            ("requests deep page 30d (offset 500,000)", "/m/requests", {"range": "30d", "offset": "500000"}),
            (
                "requests 7d provider=anthropic status=error",
                "/m/requests",
                {"range": "7d", "provider": "anthropic", "status": "error"},
            ),
            ("requests 24h user filter (no index)", "/m/requests", {"user": "user-0042"}),
            ("requests 30d user filter (no index)", "/m/requests", {"range": "30d", "user": "user-0042"}),
            ("requests 24h tag filter", "/m/requests", {"tag": "feature:search"}),
            ("requests 24h text search q=server", "/m/requests", {"q": "server"}),
            ("requests 24h sorted by cost", "/m/requests", {"sort": "cost"}),
            ("requests 30d sorted by cost", "/m/requests", {"range": "30d", "sort": "cost"}),
            ("request detail (+ attempts by call_id)", f"/m/requests/{some_id}", {}),
            *trace_pages(client),
            ("costs 30d", "/m/costs", {"range": "30d"}),
            ("costs 90d", "/m/costs", {"range": "90d"}),
            ("errors 24h", "/m/errors", {}),
            ("errors 30d", "/m/errors", {"range": "30d"}),
        ]
        print("\n| page (through the ASGI app, in-process) | ms |\n|---|---:|")
        for label, url, params in pages:
            response = client.get(url, params=params)
            assert response.status_code == 200, (url, response.status_code, response.text[:300])
            ms = timed(lambda url=url, params=params: client.get(url, params=params), args.runs)
            print(f"| {label} | {ms:,.1f} |")
        csv_ms = timed(lambda: client.get("/m/requests.csv", params={"range": "1h"}), args.runs)
        print(f"| export CSV 1h (~{args.rows / args.days / 24:,.0f} rows) | {csv_ms:,.1f} |")

        # A live dashboard: rows the writer has not projected yet are read raw, beside the roll-ups.
        fresh = list(rows(1000, now=time.time() + 1, days=10 / 86400, seed=2))
        store_engine.write(lambda conn: insert_rows(conn, fresh))
        start = time.perf_counter()
        client.get("/m/fragments/overview/kpis")
        print(
            f"| overview/kpis right after 1,000 new calls (not projected yet: read raw) | "
            f"{(time.perf_counter() - start) * 1000:,.1f} |"
        )

        print("\n| JSON summary API (through the app) | ms |\n|---|---:|")
        for label in ("24h", "7d", "30d"):
            params = {"since": label}
            response = client.get("/m/api/summary", params=params)
            assert response.status_code == 200, response.text[:300]
            ms = timed(lambda params=params: client.get("/m/api/summary", params=params), args.runs)
            print(f"| api/summary since={label} | {ms:,.1f} |")
        ms = timed(lambda: client.get("/m/api/summary"), args.runs)
        print(f"| api/summary, everything recorded | {ms:,.1f} |")
        ms = timed(lambda: client.get("/m/api/summary", params={"since": "7d", "model": "gpt-4o"}), args.runs)
        print(f"| api/summary since=7d model=gpt-4o | {ms:,.1f} |")
    monitor.close()


if __name__ == "__main__":
    main()
