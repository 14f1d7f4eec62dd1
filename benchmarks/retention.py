"""How long pruning takes and how long it holds the write lock: ``python benchmarks/retention.py [--rows N]``.

Seeds N calls (default 1,000,000, evenly over 30 days; the same synthetic rows as ``benchmarks/dashboard.py``),
builds the dashboard roll-ups, then prunes everything older than 15 days (half the rows) with
``store.retention.prune`` while a writer thread keeps inserting like a busy app (20 rows every 10 ms through
``Database.write``). Prints the prune's total time, its transactions and the longest one, and the writer's worst
wait for the lock. For comparison, a copy of the same database is pruned with one plain ``DELETE`` statement.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dashboard import seed  # noqa: E402
from llm_monitor_mw.record import CallRecord  # noqa: E402
from llm_monitor_mw.store import Database, analytics  # noqa: E402
from llm_monitor_mw.store.retention import prune  # noqa: E402
from llm_monitor_mw.store.writer import insert_records  # noqa: E402

DAY = 86400


def busy_writer(path: Path, stop: threading.Event, waits: list[float]) -> None:
    """Insert 20 rows every 10 ms, recording how long each insert took (mostly: waiting for the lock)."""
    db = Database(path)
    while not stop.is_set():
        batch = [
            CallRecord(started_at=time.time(), provider="openai", operation="chat", endpoint="/v1/chat/completions")
            for _ in range(20)
        ]
        start = time.perf_counter()
        insert_records(db, batch)
        waits.append(time.perf_counter() - start)
        stop.wait(0.01)
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep-days", type=float, default=15.0)
    args = parser.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="llm-monitor-retention-") as tmp:
        path = Path(tmp) / "calls.db"
        seconds = seed(path, args.rows, now=now, days=30)
        print(f"seeded {args.rows:,} rows in {seconds:.1f} s", flush=True)
        start = time.perf_counter()
        analytics.ensure(Database(path))
        print(f"built roll-ups in {time.perf_counter() - start:.1f} s", flush=True)
        copy = Path(tmp) / "copy.db"
        shutil.copyfile(path, copy)
        cutoff = now - args.keep_days * DAY

        stop = threading.Event()
        waits: list[float] = []
        writer = threading.Thread(target=busy_writer, args=(path, stop, waits))
        writer.start()
        time.sleep(0.5)
        idle = list(waits)
        waits.clear()
        result = prune(Database(path), cutoff)
        stop.set()
        writer.join()

        conn = sqlite3.connect(copy)
        start = time.perf_counter()
        conn.execute("DELETE FROM calls WHERE started_at < ?", (cutoff,))
        conn.commit()
        single = time.perf_counter() - start
        conn.close()

    print()
    print(
        f"llm-monitor-mw retention — Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" {os.cpu_count()} CPUs"
    )
    print()
    print("| figure | value |")
    print("|---|---:|")
    print(f"| calls deleted (of {args.rows:,}) | {result.calls:,} |")
    print(f"| roll-up rows deleted | {result.rollup_rows:,} |")
    print(f"| prune total time | {result.seconds:.1f} s |")
    print(f"| write transactions | {result.transactions:,} |")
    print(f"| longest write lock held by the prune | {result.longest_lock_s * 1000:.0f} ms |")
    print(f"| concurrent writer: inserts during the prune | {len(waits):,} |")
    print(f"| concurrent writer: median / worst insert | {statistics.median(waits) * 1000:.1f} / "
          f"{max(waits) * 1000:.0f} ms |")  # fmt: skip
    if idle:
        print(f"| same writer before the prune: worst insert | {max(idle) * 1000:.0f} ms |")
    print(f"| one plain DELETE of the same rows (write lock held throughout) | {single:.1f} s |")


if __name__ == "__main__":
    main()
