#!/usr/bin/env python3
"""Usage per API key: the cost of fingerprinting on the writer thread, and of the "by key" breakdown at scale.

1. ``identify`` (strip ``Bearer``, HMAC-SHA256, hint) per call, in microseconds.
2. ``Analytics.by_key`` (what the Costs panel and ``api/keys`` ask) over a SQLite file of ``--rows`` calls spread
   over 30 days with ``--keys`` distinct fingerprints (plus a fifth of the calls without a key), for the ranges the
   dashboard offers; and the requests log's count with ``key=`` (the ``idx_calls_key`` index).

    python benchmarks/keys.py                    # 1,000,000 rows, 50 keys
    python benchmarks/keys.py --rows 200000 --keys 10
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from llm_monitor_mw.capture.keys import identify
from llm_monitor_mw.store import open_engine
from llm_monitor_mw.store.projections import catch_up
from llm_monitor_mw.store.read import Analytics, Filters

DAY = 86400.0


def best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def seed(path: Path, rows: int, keys: int) -> None:
    engine = open_engine(str(path))
    engine.ensure()
    engine.close()
    rng = random.Random(7)
    now = time.time()
    fps = [f"{rng.getrandbits(64):016x}" for _ in range(keys)]
    conn = sqlite3.connect(path)
    batch = []
    for i in range(rows):
        fp = rng.choice(fps) if i % 5 else None
        when = now - rng.random() * 30 * DAY
        batch.append((when, "openai", "chat", "gpt-4o-mini", 200, 1, 100, 20, 120, 0.001, fp, "sk-…abcd"))
    conn.executemany(
        "INSERT INTO calls (started_at, provider, operation, model, status_code, ok, input_tokens, output_tokens,"
        " total_tokens, cost_usd, key_fingerprint, key_hint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        batch,
    )
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=50)
    args = parser.parse_args()

    credential = b"Bearer sk-proj-" + b"x" * 150 + b"wxyz"
    n = 200_000
    start = time.perf_counter()
    for _ in range(n):
        identify(credential, b"s" * 32)
    print(f"identify (Bearer, 164-char key): {(time.perf_counter() - start) / n * 1e6:.2f} µs per call\n")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keys.db"
        seed(path, args.rows, args.keys)
        engine = open_engine(str(path))
        catch_up(engine)  # the rows were inserted behind the writer's back: roll them up as the writer would
        analytics = Analytics(engine)
        raw = Analytics(engine, use_rollups=False)
        now = time.time()
        first = analytics.by_key(Filters(since=now - DAY, until=now), limit=1)[0]["key_fingerprint"]
        print(f"{args.rows:,} rows over 30 days, {args.keys} keys (SQLite)\n")
        print(f"{'range':>6} | {'by_key, roll-ups (ms)':>21} | {'by_key, raw rows (ms)':>21} | {'count key= (ms)':>15}")
        print(f"{'-' * 6}-+-{'-' * 21}-+-{'-' * 21}-+-{'-' * 15}")
        for name, span in (("1h", 3600), ("24h", DAY), ("7d", 7 * DAY), ("30d", 30 * DAY)):
            f = Filters(since=now - span, until=now)
            by_key = best(lambda f=f: analytics.by_key(f, limit=15))
            by_raw = best(lambda f=f: raw.by_key(f, limit=15))
            count = best(lambda f=f: analytics.count(Filters(since=f.since, until=f.until, key=first)))
            print(f"{name:>6} | {by_key:>21.1f} | {by_raw:>21.1f} | {count:>15.1f}")
        engine.close()


if __name__ == "__main__":
    main()
