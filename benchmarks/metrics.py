"""What ``/metrics`` costs at a million rows: ``python benchmarks/metrics.py [--rows N] [--runs R]``.

Seeds N calls (default 1,000,000 over 30 days, the dashboard benchmark's data: 8 models, 3 statuses) into a
temporary database, then prints:

* the first refresh of the cumulative counters (``store/counters.py``) over every row — what the first scrape of
  an existing database pays — and the longest single chunk (how long the writer can wait for the lock);
* a whole scrape (``GET /metrics`` in-process: refresh + read + exposition) with nothing new, and after 1,000 new
  calls (median of ``--runs``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402

from benchmarks.dashboard import rows, seed  # noqa: E402
from llm_monitor_mw import BasicAuth, Monitor  # noqa: E402
from llm_monitor_mw.store import counters  # noqa: E402
from llm_monitor_mw.store.schema import CALL_COLUMNS, CALLS  # noqa: E402


class TimedCounters(counters.Counters):
    """Counters that remember how long each chunk's write transaction took."""

    chunks: list[float]

    def refresh(self) -> int:
        self.chunks = []
        write = self.db.write

        def timed_write(fn, **kw):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return write(fn, **kw)
            finally:
                self.chunks.append(time.perf_counter() - start)

        self.db.write = timed_write  # type: ignore[method-assign]
        try:
            return super().refresh()
        finally:
            del self.db.write


def add_rows(path: Path, n: int, now: float) -> None:
    conn = sqlite3.connect(path)
    sql = f"INSERT INTO {CALLS} ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
    conn.executemany(sql, list(rows(n, now=now, days=0.01, seed=int(now * 1000) % 10_000)))
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        now = time.time()
        seconds = seed(path, args.rows, now=now, days=30)
        print(
            f"llm-monitor-mw /metrics benchmark — Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
            f" {os.cpu_count()} CPUs; seeded {args.rows:,} calls in {seconds:.1f} s\n"
        )
        monitor = Monitor(path)
        timed = TimedCounters(monitor.db)
        start = time.perf_counter()
        timed.refresh()
        first = time.perf_counter() - start
        print(
            f"first refresh over {args.rows:,} rows: {first:.2f} s in {len(timed.chunks)} write transactions of up to"
            f" {counters.CHUNK:,} rows (longest write lock {max(timed.chunks, default=0):.2f} s)"
        )

        client = TestClient(monitor.asgi_app(auth=BasicAuth("bench", "unused"), metrics_token="bench-token"))
        headers = {"Authorization": "Bearer bench-token"}
        size = len(client.get("/metrics", headers=headers).content)
        idle, busy = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            client.get("/metrics", headers=headers)
            idle.append((time.perf_counter() - start) * 1000)
            add_rows(path, 1000, time.time())
            start = time.perf_counter()
            client.get("/metrics", headers=headers)
            busy.append((time.perf_counter() - start) * 1000)
        print(f"scrape, nothing new:        {statistics.median(idle):7.1f} ms  ({size:,} bytes of exposition)")
        print(f"scrape after 1,000 new calls: {statistics.median(busy):5.1f} ms")
        monitor.close()


if __name__ == "__main__":
    main()
