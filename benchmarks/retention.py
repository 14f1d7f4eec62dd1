"""How long a concurrent writer waits while retention and ``llm-monitor prune`` run on a backlog.

``python benchmarks/retention.py [--rows N] [--keep-days D] [--target URL] [--skip-cli]``

Seeds N calls (default 1,000,000, evenly over 30 days) straight into the ``calls`` table, as an old database
holds them: no roll-ups, no counters, the projection cursor at nothing. Then, each scenario on a fresh copy:

* **retention** (in-process, as ``Monitor(retention_days=...)`` runs it): ``prune --dry-run`` counts, then the
  backlog is projected (by the writer's catch-up, when this code has one) and the prune runs;
* **cli** (SQLite only): ``llm-monitor prune DB --older-than Dd`` in a process of its own.

Throughout, another writer (its own connection, like a second process) inserts 20 rows every 10 ms and records
how long each of its write transactions took from asking for the lock to ``COMMIT``: its worst figure is the
longest any app waited on maintenance. The dry run's counts are compared with what the real run deleted.

Runs unchanged against older checkouts (``PYTHONPATH=/tmp/old python benchmarks/retention.py``) for "before".
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if "llm_monitor_mw" not in sys.modules and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_monitor_mw.store import retention

try:  # the engine interface (issue 10); older code has only the SQLite Database
    from llm_monitor_mw.store.engine import open_engine
except ImportError:  # pragma: no cover - old checkouts
    from llm_monitor_mw.store.database import Database as open_engine  # type: ignore[assignment,no-redef]

DAY = 86400
COLUMNS = (
    "started_at",
    "provider",
    "operation",
    "endpoint",
    "model",
    "status_code",
    "ok",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "duration_ms",
    "ttft_ms",
    "route",
    "user",
    "tags",
)
_QUOTED = ", ".join(f'"{c}"' for c in COLUMNS)
INSERT = f"INSERT INTO calls ({_QUOTED}) VALUES ({', '.join('?' * len(COLUMNS))})"
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("gcp.gemini", "g-2.5")]


def synthetic(n: int, *, now: float, days: float, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``n`` rows of :data:`COLUMNS`, oldest first, spread evenly over the last ``days``."""
    rng = random.Random(seed)
    span = days * DAY
    for i in range(n):
        provider, model = MODELS[rng.randrange(len(MODELS))]
        ok = rng.random() > 0.04
        inp, out = rng.randrange(20, 3000), rng.randrange(5, 800)
        yield (
            now - span + span * (i + rng.random()) / n,
            provider,
            "chat",
            "/v1/chat/completions",
            model,
            200 if ok else 429,
            1 if ok else 0,
            inp,
            out,
            inp + out,
            (inp * 0.15 + out * 0.6) / 1e6,
            rng.lognormvariate(7, 0.5),
            rng.lognormvariate(5.5, 0.5) if rng.random() > 0.5 else None,
            f"/api/feature-{rng.randrange(20)}",
            f"user-{rng.randrange(500):04d}",
            json.dumps({"feature": f"f{rng.randrange(8)}"}, separators=(",", ":")),
        )


def seed(target: str, n: int, *, now: float, days: float) -> float:
    """Create the schema and insert ``n`` rows as raw rows (no projections); returns the seconds it took."""
    engine = open_engine(target)
    engine.ensure()
    started = time.perf_counter()
    batch: list[tuple[Any, ...]] = []
    for row in synthetic(n, now=now, days=days):
        batch.append(row)
        if len(batch) == 20_000:
            engine.write(lambda c, b=batch: c.executemany(INSERT, b))
            batch = []
    if batch:
        engine.write(lambda c, b=batch: c.executemany(INSERT, b))
    if engine.name == "sqlite":
        engine.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.close()
    return time.perf_counter() - started


class Writer(threading.Thread):
    """Another app's writer: 20 rows every 10 ms on a connection of its own; records each transaction's time."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.halt = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (start, seconds)
        self.errors = 0

    def run(self) -> None:
        engine = open_engine(self.target)
        engine.ensure()
        rows = list(synthetic(20, now=time.time(), days=0.001, seed=7))
        while not self.halt.is_set():
            start = time.perf_counter()
            try:
                engine.write(lambda c: c.executemany(INSERT, rows))
            except Exception:
                self.errors += 1
            self.samples.append((start, time.perf_counter() - start))
            self.halt.wait(0.01)
        engine.close()

    def worst(self, since: float = 0.0, until: float = float("inf")) -> float:
        """The longest transaction (seconds) that started in ``[since, until)``."""
        return max((s for t, s in self.samples if since <= t < until), default=0.0)

    def median(self) -> float:
        return statistics.median(s for _, s in self.samples) if self.samples else 0.0


def catch_up_function() -> Callable[[Any], Any] | None:
    """The writer's backlog catch-up in this code, if it has one (issue 10's projections), else ``None``."""
    try:
        from llm_monitor_mw.store import projections  # type: ignore[attr-defined]
    except ImportError:
        return None
    for name in ("catch_up", "backfill", "project_backlog"):
        if callable(fn := getattr(projections, name, None)):
            return fn
    return None


def prune(engine: Any, before: float, *, dry_run: bool = False) -> Any:
    return retention.prune(engine, before, dry_run=dry_run)


def copy_target(path: Path, name: str) -> Path:
    dest = path.with_name(name)
    shutil.copyfile(path, dest)
    return dest


def scenario_retention(target: str, cutoff: float) -> dict[str, Any]:
    writer = Writer(target)
    writer.start()
    time.sleep(0.5)
    engine = open_engine(target)
    out: dict[str, Any] = {}
    idle_until = time.perf_counter()
    dry = prune(engine, cutoff, dry_run=True)
    out["dry_calls"], out["dry_rollups"] = dry.calls, dry.rollup_rows
    t0 = time.perf_counter()
    catch_up = catch_up_function()
    if catch_up is not None:
        catch_up(engine)
        out["catch_up_s"] = time.perf_counter() - t0
        out["catch_up_worst"] = writer.worst(t0)
        dry = prune(engine, cutoff, dry_run=True)
        out["dry_calls"], out["dry_rollups"] = dry.calls, dry.rollup_rows
    t1 = time.perf_counter()
    result = prune(engine, cutoff)
    t2 = time.perf_counter()
    writer.halt.set()
    writer.join()
    engine.close()
    out.update(
        calls=result.calls,
        rollups=result.rollup_rows,
        seconds=t2 - t1,
        transactions=result.transactions,
        self_reported_ms=result.longest_lock_s * 1000,
        prune_worst=writer.worst(t1, t2),
        worst=writer.worst(t0),
        idle_worst=writer.worst(0, idle_until),
        inserts=len(writer.samples),
        median=writer.median(),
        writer_errors=writer.errors,
    )
    return out


def counts(line: str) -> list[int]:
    """The numbers before "calls" and "roll-up rows" in a line ``llm-monitor prune`` printed."""
    return [int(x.replace(",", "")) for x in re.findall(r"(\d[\d,]*) (?:calls|roll-up rows)", line)]


def scenario_cli(path: Path, keep_days: float) -> dict[str, Any]:
    writer = Writer(str(path))
    writer.start()
    time.sleep(0.5)
    cmd = [sys.executable, "-m", "llm_monitor_mw.cli", "prune", str(path), "--older-than", f"{keep_days:g}d"]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, check=True).stdout.strip()
    t0 = time.perf_counter()
    real = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    t1 = time.perf_counter()
    writer.halt.set()
    writer.join()
    return {
        "dry": dry,
        "real": real,
        "dry_counts": counts(dry),
        "real_counts": counts(real),
        "seconds": t1 - t0,
        "worst": writer.worst(t0, t1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep-days", type=float, default=15.0)
    parser.add_argument("--target", help="a postgresql:// URL of an empty database (default: a SQLite file)")
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()
    now = time.time()
    cutoff = now - args.keep_days * DAY
    with tempfile.TemporaryDirectory(prefix="llm-monitor-retention-") as tmp:
        target = args.target or str(Path(tmp) / "seed.db")
        seconds = seed(target, args.rows, now=now, days=30)
        print(f"seeded {args.rows:,} rows in {seconds:.1f} s", flush=True)
        if args.target:
            ret = scenario_retention(target, cutoff)
            cli = None
        else:
            ret = scenario_retention(str(copy_target(Path(target), "retention.db")), cutoff)
            print(f"retention: {ret}", flush=True)
            cli = None if args.skip_cli else scenario_cli(copy_target(Path(target), "cli.db"), args.keep_days)
    engine_name = "PostgreSQL" if args.target else f"SQLite {sqlite3.sqlite_version}"
    print()
    print(f"llm-monitor-mw retention — {engine_name}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"(prune signature: retention.prune{inspect.signature(retention.prune)})")
    print()
    print(
        f"{args.rows:,} calls seeded over 30 days, never rolled up; prune everything older than {args.keep_days:g} days"
    )
    print()
    print("| figure | value |")
    print("|---|---:|")
    print(f"| dry run: calls / roll-up rows it says it would delete | {ret['dry_calls']:,} / {ret['dry_rollups']:,} |")
    print(f"| real run: calls / roll-up rows deleted | {ret['calls']:,} / {ret['rollups']:,} |")
    if "catch_up_s" in ret:
        print(f"| backlog projection (the writer's catch-up) | {ret['catch_up_s']:.1f} s |")
        print(f"| concurrent writer: worst wait during the catch-up | {ret['catch_up_worst'] * 1000:.0f} ms |")
    print(f"| prune time / write transactions | {ret['seconds']:.1f} s / {ret['transactions']:,} |")
    print(f'| prune\'s own "longest write lock" | {ret["self_reported_ms"]:.0f} ms |')
    print(f"| **concurrent writer: worst wait during the prune** | **{ret['prune_worst'] * 1000:.0f} ms** |")
    print(f"| concurrent writer: median insert / worst before maintenance | {ret['median'] * 1000:.1f} / "
          f"{ret['idle_worst'] * 1000:.0f} ms |")  # fmt: skip
    if ret["writer_errors"]:
        print(f"| concurrent writer: failed inserts | {ret['writer_errors']:,} |")
    if cli is not None:
        print(f"| CLI prune: dry run says / real run printed (calls, roll-up rows) | {cli['dry_counts']} / "
              f"{cli['real_counts']} |")  # fmt: skip
        print(f"| CLI prune: time | {cli['seconds']:.1f} s |")
        print(f"| **CLI prune: other process's writer, worst wait** | **{cli['worst'] * 1000:.0f} ms** |")
        print(f"\nCLI prune printed: {cli['real']}")


if __name__ == "__main__":
    main()
