"""Projections on the write side: what they cost the writer, and how long a backlog holds the write lock.

Two measurements per engine (SQLite file; PostgreSQL when ``--pg URL`` is given):

1. **Sustained ingest with projections**: ``--records`` call records submitted to a :class:`Writer` (batches of
   1,000, the default), flushed; records/s, and the longest write transaction (``fn`` called -> returned) seen.
2. **Backlog catch-up**: ``--backlog`` rows inserted raw (never projected, as an old database's are), then caught
   up by :func:`projections.catch_up` with each ``--limits`` value: seconds per 1,000 rows and the longest
   transaction. ``projections.LIMITS`` is chosen so the longest stays under ~100 ms on a 2-vCPU VM.

During both, a second writer (its own connection, as another process's would be) writes one row every 20 ms and
records how long it waited for the cursor lock ("longest wait"): what the app's writer pays for the other's
transactions.

Run: ``python benchmarks/projection_lag.py [--pg postgresql://… | --start-postgres] [--records 50000]
[--backlog 100000]`` (``--pg``: a scratch database whose tables are dropped).

Figures (2-vCPU VM, SQLite 3.40, PostgreSQL 15 local, fsync off; 2026-12, issue 10):
see the README's "Benchmarks" section (this script prints the table).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import projections
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.writer import Writer, finite_row, insert_rows, record_row

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


class Neighbour:
    """Another writer on its own connection: one row every ``every`` seconds, timing its wait for the lock."""

    def __init__(self, target: str, every: float = 0.02) -> None:
        self.engine = open_engine(target)
        self.engine.ensure()
        self.every = every
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._row = finite_row(record_row(records(1, random.Random(9), span_s=60)[0], "neighbour"))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Neighbour:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.close()

    def _run(self) -> None:
        projector = projections.Projector(self.engine)
        dialect = self.engine.dialect
        while not self._stop.wait(self.every):
            began = time.perf_counter()

            def fn(conn: Any, began: float = began) -> None:
                lo = projections.lock_cursor(conn, dialect)
                self.waits.append(time.perf_counter() - began)  # retries (SQLite: busy) included
                insert_rows(conn, [self._row])
                projector.project(conn, lo, limit=1)

            self.engine.write(fn)

    @property
    def longest(self) -> float:
        return max(self.waits, default=0.0)


def sustained(target: str, n: int) -> tuple[float, float, float]:
    engine = open_engine(target)
    engine.ensure()
    timed = Timed(engine)
    rows = records(n, random.Random(1), span_s=600)  # live traffic: the last ten minutes
    writer = Writer(engine, lambda r: r, interval=0.01, instance="bench")
    writer.start()
    with Neighbour(target) as neighbour:
        began = time.perf_counter()
        for r in rows:
            while not writer.submit(r):
                time.sleep(0.001)
        assert writer.flush(600)
        elapsed = time.perf_counter() - began
    writer.close()
    engine.close()
    return n / elapsed, max(timed.durations), neighbour.longest


def backlog(target: str, n: int, limit: int, span_s: float) -> tuple[float, float, float]:
    engine = open_engine(target)
    engine.ensure()
    rows = [finite_row(record_row(r, "old")) for r in records(n, random.Random(2), span_s=span_s)]
    for start in range(0, n, 10_000):
        engine.write(lambda c, chunk=rows[start : start + 10_000]: insert_rows(c, chunk))
    timed = Timed(engine)
    with Neighbour(target) as neighbour:
        began = time.perf_counter()
        progress = projections.catch_up(engine, limit=limit)
        elapsed = time.perf_counter() - began
    assert not progress.behind, progress
    engine.close()
    return elapsed / n * 1000, max(timed.durations), neighbour.longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="a postgresql:// URL of a scratch database (its tables are dropped per run)")
    parser.add_argument("--start-postgres", action="store_true", help="also measure PostgreSQL, on a throwaway cluster")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--limits", default="500,1000,2000,5000")
    parser.add_argument("--span-days", type=float, default=1.0, help="the backlog's calls span this many days")
    args = parser.parse_args()
    if args.start_postgres:
        from ingest import throwaway_postgres

        with throwaway_postgres() as url:
            args.pg = url
            measure(args)
    else:
        measure(args)


def measure(args: argparse.Namespace) -> None:
    import os

    limits = [int(x) for x in args.limits.split(",")]
    targets: list[tuple[str, Callable[[], str]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="projection-lag-"))
    counter = iter(range(1_000_000))
    targets.append(("sqlite", lambda: str(tmp / f"bench{next(counter)}.db")))
    if args.pg:
        targets.append(("postgresql", lambda: _fresh_pg(args.pg)))
    print(f"load average {os.getloadavg()[0]:.2f}; default limits {projections.LIMITS}")
    print("| engine | measure | figure | longest transaction | longest wait of a concurrent writer |")
    print("|---|---|---:|---:|---:|")
    for name, fresh in targets:
        rate, longest, wait = sustained(fresh(), args.records)
        print(f"| {name} | ingest, records/s | {rate:,.0f} | {longest * 1000:.1f} ms | {wait * 1000:.1f} ms |")
        for limit in limits:
            per_k, longest, wait = backlog(fresh(), args.backlog, limit, args.span_days * 86400)
            print(
                f"| {name} | catch-up limit {limit}, s/1k rows | {per_k:.3f} | {longest * 1000:.1f} ms "
                f"| {wait * 1000:.1f} ms |"
            )


def _fresh_pg(url: str) -> str:
    """Drop every table of the database at ``url`` (a scratch database) and return ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


if __name__ == "__main__":
    main()
