"""How fast the dashboard answers at a million rows: ``python benchmarks/dashboard.py [--rows N] [--runs R]``.

Seeds N calls (default 1,000,000 over 30 days; inserted directly with ``executemany``) into a temporary database,
then prints server-side milliseconds (median of ``--runs``) for:

* the dashboard's queries answered from raw rows ("before") and from the roll-ups ("after"), and the one-off
  roll-up build that ``analytics.ensure`` does on an existing database;
* each page and fragment, through the ASGI app in-process (query + template rendering, no network);
* the JSON summary API (``api/summary``).

Target: <= 100 ms per page at 1M rows.
"""

from __future__ import annotations

import argparse
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

from llm_monitor_mw import Monitor  # noqa: E402
from llm_monitor_mw.store import analytics  # noqa: E402
from llm_monitor_mw.store.queries import Filters  # noqa: E402
from llm_monitor_mw.store.schema import CALL_COLUMNS, CALLS  # noqa: E402
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


def rows(n: int, *, now: float, days: float, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``n`` synthetic rows in :data:`CALL_COLUMNS` order, spread evenly over the last ``days``."""
    rng = random.Random(seed)
    span = days * 86400
    base = dict.fromkeys(CALL_COLUMNS)
    for i in range(n):
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
            route=ROUTES[rng.randrange(len(ROUTES))],
            user=USERS[rng.randrange(len(USERS))] if r < 0.9 else None,
            tags=json.dumps({"feature": FEATURES[rng.randrange(len(FEATURES))]}, separators=(",", ":")),
        )
        yield tuple(row[c] for c in CALL_COLUMNS)


def seed(path: Path, n: int, *, now: float, days: float) -> float:
    """Create the schema (through ``Monitor``) and insert ``n`` rows; returns the seconds it took."""
    Monitor(path).db.ensure()
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    sql = f"INSERT INTO {CALLS} ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
    batch: list[tuple[Any, ...]] = []
    for row in rows(n, now=now, days=days):
        batch.append(row)
        if len(batch) == 50_000:
            conn.executemany(sql, batch)
            conn.commit()
            batch.clear()
    conn.executemany(sql, batch)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - start


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
    from llm_monitor_mw.web.pages import step_for

    def run() -> None:
        f = Filters(since=now - span, until=now)
        prev = Filters(since=now - 2 * span, until=now - span)
        a.report(f, step_for(span))
        a.totals(prev)  # cached for a minute by the pages; measured uncached here
        for dim in ("route", "user", "tag"):
            a.by_dim(f, dim)
        a.facets(f)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        now = time.time()
        seconds = seed(path, args.rows, now=now, days=args.days)
        size = os.path.getsize(path) / 2**20
        print(
            f"llm-monitor-mw dashboard benchmark — Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
            f" {os.cpu_count()} CPUs"
        )
        print(
            f"seeded {args.rows:,} calls over {args.days:g} days in {seconds:.1f} s ({size:,.0f} MiB); "
            f"median of {args.runs} runs after a warm-up\n"
        )

        monitor = Monitor(path)
        raw = analytics.Analytics(monitor.db, use_rollups=False)
        results: list[tuple[str, float]] = []
        for label, span in (("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0)):
            start = time.perf_counter()  # one cold run: these take seconds
            overview_queries(raw, span, now)()
            results.append((f"overview queries {label}, raw rows (before)", (time.perf_counter() - start) * 1000))
        start = time.perf_counter()
        analytics.ensure(monitor.db)
        build = (time.perf_counter() - start) * 1000
        results.append(("roll-up build on an existing database (once)", build))
        rolled = analytics.Analytics(monitor.db)
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

            # A live dashboard: new rows since the last refresh are rolled up on the next read.
            conn = sqlite3.connect(path)
            sql = f"INSERT INTO {CALLS} ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
            conn.executemany(sql, list(rows(1000, now=time.time() + 1, days=10 / 86400, seed=2)))
            conn.commit()
            conn.close()
            start = time.perf_counter()
            client.get("/m/fragments/overview/kpis")
            print(
                f"| overview/kpis right after 1,000 new calls (incremental roll-up) | "
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
