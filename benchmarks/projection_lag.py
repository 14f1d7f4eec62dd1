"""Projections on the write side: what they cost the writer, and how long a backlog holds the write lock.

Two measurements per engine (SQLite file; PostgreSQL when ``--pg URL`` is given):

1. **Sustained ingest with projections**: ``--records`` call records submitted to a :class:`Writer` (batches of
   1,000, the default), flushed; records/s, and the longest write transaction (lock taken -> commit) seen.
2. **Backlog catch-up**: ``--backlog`` rows inserted raw (never projected, as an old database's are), then caught
   up by :func:`projections.catch_up` with each ``--limits`` value: seconds per 1,000 rows and the longest
   transaction. ``projections.LIMIT`` is chosen so the longest stays well under 100 ms on a 2-vCPU VM.

Run: ``python benchmarks/projection_lag.py [--pg postgresql://…] [--records 50000] [--backlog 100000]``.

Figures (2-vCPU VM, SQLite 3.40, PostgreSQL 15 local, fsync off; 2026-12, issue 10):
see the README's "Benchmarks" section (this script prints the table).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import projections
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.writer import _INSERT, Writer, finite_row, record_row

PROVIDERS = ("openai", "anthropic", "gemini", "mistral")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "gemini-flash", "mistral-large", "o3")


def records(n: int, rng: random.Random, span_s: float = 7 * 86400) -> list[CallRecord]:
    """``n`` calls over the last ``span_s`` seconds, in time order (ids follow time, as they do in a real store)."""
    now = time.time()
    out = []
    for i in range(n):
        status = rng.choice((200,) * 18 + (429, 500))
        out.append(
            CallRecord(
                started_at=now - span_s + span_s * (i + rng.random()) / n,
                provider=rng.choice(PROVIDERS),
                operation="chat",
                endpoint="/v1/chat/completions",
                request_model=rng.choice(MODELS),
                status_code=status,
                error_type=None if status == 200 else "api_error",
                input_tokens=rng.randint(10, 4000),
                output_tokens=rng.randint(1, 800),
                total_tokens=None,
                cost_usd=rng.random() / 100,
                duration_ms=rng.lognormvariate(6.5, 1.0),
                ttft_ms=rng.lognormvariate(5.5, 0.8) if rng.random() < 0.5 else None,
                tags={"team": rng.choice("abcd"), "env": "prod"},
                route=rng.choice(("/chat", "/search", "/summarise")),
                user=f"u{rng.randint(1, 200)}",
            )
        )
    return out


class Timed:
    """Wraps ``engine.write`` to record how long each transaction took."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.durations: list[float] = []
        inner: Callable[..., Any] = engine.write

        def write(fn: Callable[..., Any], **kw: Any) -> Any:
            def timed(conn: Any) -> Any:
                began = time.perf_counter()
                try:
                    return fn(conn)
                finally:
                    self.durations.append(time.perf_counter() - began)

            return inner(timed, **kw)

        engine.write = write


def sustained(target: str, n: int) -> tuple[float, float]:
    engine = open_engine(target)
    engine.ensure()
    timed = Timed(engine)
    rows = records(n, random.Random(1), span_s=600)  # live traffic: the last ten minutes
    writer = Writer(engine, lambda r: r, interval=0.01, instance="bench")
    writer.start()
    began = time.perf_counter()
    for r in rows:
        while not writer.submit(r):
            time.sleep(0.001)
    assert writer.flush(600)
    elapsed = time.perf_counter() - began
    writer.close()
    engine.close()
    return n / elapsed, max(timed.durations)


def backlog(target: str, n: int, limit: int, span_s: float) -> tuple[float, float]:
    engine = open_engine(target)
    engine.ensure()
    rows = [finite_row(record_row(r, "old")) for r in records(n, random.Random(2), span_s=span_s)]
    for start in range(0, n, 10_000):
        engine.write(lambda c, chunk=rows[start : start + 10_000]: c.executemany(_INSERT, chunk))
    timed = Timed(engine)
    began = time.perf_counter()
    progress = projections.catch_up(engine, limit=limit)
    elapsed = time.perf_counter() - began
    assert not progress.behind, progress
    engine.close()
    return elapsed / n * 1000, max(timed.durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="a postgresql:// URL of an empty database per run (its tables are dropped)")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--limits", default="500,1000,2000,5000")
    parser.add_argument("--span-days", type=float, default=1.0, help="the backlog's calls span this many days")
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    targets: list[tuple[str, Callable[[], str]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="projection-lag-"))
    counter = iter(range(1_000_000))
    targets.append(("sqlite", lambda: str(tmp / f"bench{next(counter)}.db")))
    if args.pg:
        targets.append(("postgresql", lambda: _fresh_pg(args.pg)))
    print(f"{'engine':<11} {'measure':<28} {'figure':>14} {'longest txn':>12}")
    for name, fresh in targets:
        rate, longest = sustained(fresh(), args.records)
        print(f"{name:<11} {'ingest, records/s':<28} {rate:>14,.0f} {longest * 1000:>10.1f}ms")
        for limit in limits:
            per_k, longest = backlog(fresh(), args.backlog, limit, args.span_days * 86400)
            print(f"{name:<11} {f'catch-up limit {limit}, s/1k':<28} {per_k:>14.3f} {longest * 1000:>10.1f}ms")


def _fresh_pg(url: str) -> str:
    """Drop every table of the database at ``url`` (a scratch database) and return ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


if __name__ == "__main__":
    main()
