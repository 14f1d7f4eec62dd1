#!/usr/bin/env python3
"""Sustained ingest: how many captured calls per second the store's writer turns into stored rows.

Calls are captured the way the transport captures them: a real ``httpx.Client`` over the package's
``MonitorTransport`` wrapping an ``httpx.MockTransport`` that answers with realistic bodies (a ~600-byte OpenAI
chat completion; a 20-chunk OpenAI SSE stream ending with a usage chunk; or a mix of those, Anthropic messages and
429 errors). The captured calls are collected first (the caller's cost is ``benchmarks/overhead.py``'s business),
then submitted to a ``Monitor``'s writer in one go; the clock runs from the first submit to the return of
``flush()``, so the figure is the writer's own throughput end to end: decode, parse, price, insert, and the
projections when the code maintains them on write.

Columns: wall seconds, records/s, the writer thread's CPU per record (``/proc/self/task/<tid>/schedstat``; process
CPU when that is not readable), and for PostgreSQL the CPU of the server's backends per record (when the server
runs on this machine and ``/proc`` shows it). When the store leaves roll-ups and counters to be caught up by the
first dashboard read and the first ``/metrics`` scrape (the code before issue 10), that catch-up is timed too and
counted in "effective records/s", so that code and code that projects on write compare honestly.

    python benchmarks/ingest.py                                   # SQLite, 50,000 records per body kind
    python benchmarks/ingest.py --db postgresql://u:p@127.0.0.1:5432/postgres   # SQLite and PostgreSQL
    python benchmarks/ingest.py --start-postgres                  # SQLite, and PostgreSQL on a throwaway cluster
    python benchmarks/ingest.py --quick                           # smoke run

For PostgreSQL each run gets a database of its own (``CREATE DATABASE``, dropped afterwards): the URL's user needs
that right. ``--start-postgres`` runs a throwaway cluster of the local PostgreSQL server binaries (as the
``postgres`` user when run as root) on 127.0.0.1 with the server's default durability (``fsync`` and
``synchronous_commit`` on), and removes it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.providers import Registry
from llm_monitor_mw.capture.transport import Capturer, MonitorTransport

KINDS = ("chat", "stream", "mix")
OPENAI = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"
ANSWER = (
    "Sure. The quarterly report shows revenue up 12% on the previous quarter, driven mostly by the new enterprise "
    "plan; churn fell to 2.1%. Costs rose 4%, mainly hosting. I would flag the support backlog, which doubled."
)
QUESTION = "Summarise the attached quarterly report in three sentences and flag anything unusual. " * 3


# ---- bodies -----------------------------------------------------------------------------------------------------


def openai_request(i: int, *, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a concise analyst."},
            {"role": "user", "content": f"{QUESTION} (#{i})"},
        ],
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def openai_chat(i: int) -> bytes:
    """A ~600-byte ``chat.completion`` as the API returns it."""
    prompt, completion = 60 + i % 400, 40 + i % 120
    return json.dumps(
        {
            "id": f"chatcmpl-{uuid.UUID(int=i).hex[:29]}",
            "object": "chat.completion",
            "created": 1_733_000_000 + i,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": (i % 3) * 32, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_0ba0d124f1",
        },
        separators=(",", ":"),
    ).encode()


def openai_stream(i: int) -> list[bytes]:
    """20 SSE events (role, 17 content deltas, finish, usage) and ``[DONE]``, one network chunk each."""
    base = {
        "id": f"chatcmpl-{uuid.UUID(int=i).hex[:29]}",
        "object": "chat.completion.chunk",
        "created": 1_733_000_000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
    }
    words = ANSWER.split(" ")
    pieces = [" ".join(words[k::17]) for k in range(17)]

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}, separators=(",", ":")).encode() + b"\n\n"

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}

    prompt, completion = 60 + i % 400, 40 + i % 120
    chunks = [event([delta({"role": "assistant", "content": "", "refusal": None})], usage=None)]
    chunks += [event([delta({"content": p})], usage=None) for p in pieces]
    chunks.append(event([delta({}, "stop")], usage=None))
    chunks.append(
        event(
            [],
            usage={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        )
    )
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def anthropic_message(i: int) -> bytes:
    return json.dumps(
        {
            "id": f"msg_{uuid.UUID(int=i).hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 80 + i % 300,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": (i % 4) * 64,
                "output_tokens": 50 + i % 90,
            },
        },
        separators=(",", ":"),
    ).encode()


RATE_LIMITED = (
    b'{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-bench on tokens per min (TPM): '
    b'Limit 200000, Used 199876, Requested 412. Please try again in 86ms.","type":"tokens","param":null,'
    b'"code":"rate_limit_exceeded"}}'
)


class _Chunks(httpx.SyncByteStream):
    """A response body delivered as separate network chunks (the transport sees each one)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def _headers(i: int, content_type: str) -> list[tuple[str, str]]:
    return [
        ("content-type", content_type),
        ("x-request-id", f"req_{i:012d}"),
        ("x-ratelimit-remaining-requests", str(9_999 - i % 1000)),
        ("x-ratelimit-remaining-tokens", str(1_999_000 - i % 100_000)),
        ("openai-processing-ms", str(300 + i % 700)),
        ("date", "Mon, 01 Dec 2026 12:00:00 GMT"),
    ]


def respond(request: httpx.Request) -> httpx.Response:
    """The mock provider: what to answer is in the ``x-bench`` header (``kind:i``)."""
    kind, _, num = request.headers["x-bench"].partition(":")
    i = int(num)
    if kind == "stream":
        return httpx.Response(200, headers=_headers(i, "text/event-stream"), stream=_Chunks(openai_stream(i)))
    if kind == "anthropic":
        return httpx.Response(200, headers=_headers(i, "application/json"), stream=_Chunks([anthropic_message(i)]))
    if kind == "429":
        headers = [*_headers(i, "application/json"), ("retry-after", "1")]
        return httpx.Response(429, headers=headers, stream=_Chunks([RATE_LIMITED]))
    return httpx.Response(200, headers=_headers(i, "application/json"), stream=_Chunks([openai_chat(i)]))


# ---- capture ----------------------------------------------------------------------------------------------------


def _capturer(sink: Callable[[Any], None]) -> Capturer:
    """A ``Capturer`` whose captured calls go to ``sink`` (built for the signature this tree has)."""
    params = inspect.signature(Capturer).parameters
    kwargs: dict[str, Any] = {"max_body_bytes": 16 * 1024 * 1024}
    if "hooks" in params:
        from llm_monitor_mw.hooks import Hooks

        kwargs["hooks"] = Hooks()
    return Capturer(Registry(), sink, **kwargs)


def call_kind(kind: str, i: int) -> str:
    """The body kind of call ``i``: ``mix`` is 45% chat, 30% stream, 15% Anthropic, 10% 429s."""
    if kind != "mix":
        return kind
    k = i % 20
    return "chat" if k < 9 else "stream" if k < 15 else "anthropic" if k < 18 else "429"


def capture(monitor: Monitor, kind: str, n: int, offset: int = 0) -> list[Any]:
    """``n`` finished captured calls (``PendingCall``), as the transport hands them to the writer."""
    items: list[Any] = []
    client = httpx.Client(transport=MonitorTransport(_capturer(items.append), httpx.MockTransport(respond)))
    features = ("chat", "search", "summaries", "agent", "support")
    with client:
        for i in range(offset, offset + n):
            k = call_kind(kind, i)
            with monitor.tags(feature=features[i % 5], customer=f"c{i % 50}"):
                if k == "anthropic":
                    body = json.dumps(
                        {
                            "model": "claude-3-5-haiku-latest",
                            "max_tokens": 512,
                            "messages": [{"role": "user", "content": QUESTION}],
                        }
                    ).encode()
                    client.post(ANTHROPIC, content=body, headers={"x-bench": f"{k}:{i}"}).read()
                elif k == "stream":
                    with client.stream(
                        "POST", OPENAI, content=openai_request(i, stream=True), headers={"x-bench": f"{k}:{i}"}
                    ) as r:
                        for _ in r.iter_raw():
                            pass
                else:
                    client.post(OPENAI, content=openai_request(i, stream=False), headers={"x-bench": f"{k}:{i}"}).read()
    if len(items) != n:
        raise RuntimeError(f"captured {len(items)} calls of {n}")
    return items


# ---- what the code under test offers (before and after issue 10) -------------------------------------------------


def writer_of(monitor: Monitor) -> Any:
    store = getattr(monitor, "store", None)
    return getattr(store, "writer", None) or monitor.writer


def engine_of(monitor: Monitor) -> Any:
    store = getattr(monitor, "store", None)
    return getattr(store, "engine", None) or monitor.db


def written(monitor: Monitor) -> tuple[int, int, int]:
    s = monitor.stats()
    return s["written"], s["dropped"], s["failed"]


def _scalar(engine: Any, sql: str) -> Any:
    row = engine.connection().execute(sql).fetchone()
    return row[0] if row else None


def read_side_catchup(monitor: Monitor) -> tuple[float, float, str]:
    """Seconds (wall, and CPU of this thread, which runs it) the first dashboard read and the first ``/metrics``
    scrape spend catching the roll-ups and counters up with the rows just written (0 when the writer projected
    them), and a note."""
    engine = engine_of(monitor)
    top = _scalar(engine, "SELECT max(id) FROM calls") or 0
    try:
        cursor = _scalar(engine, "SELECT last_id FROM rollup_state WHERE name = 'calls'") or 0
    except Exception:
        cursor = 0
    from llm_monitor_mw.store import analytics, counters

    rollups = getattr(analytics, "Rollups", None)
    counting = getattr(getattr(counters, "Counters", None), "refresh", None)
    if cursor >= top:
        return 0.0, 0.0, "projected on write"
    if rollups is None or counting is None:
        return 0.0, 0.0, f"{top - cursor} rows not projected"
    cpu = time.thread_time()
    start = time.perf_counter()
    rollups(engine).refresh()  # what the first dashboard GET ran (BEGIN IMMEDIATE, chunks of rows)
    mid = time.perf_counter()
    counters.Counters(engine).refresh()  # what the first /metrics scrape ran
    end = time.perf_counter()
    return (
        end - start,
        time.thread_time() - cpu,
        f"read-side: roll-ups {mid - start:.2f} s + counters {end - mid:.2f} s",
    )


def _cursor_lag(engine: Any) -> int:
    top = _scalar(engine, "SELECT max(id) FROM calls") or 0
    try:
        cursor = _scalar(engine, "SELECT last_id FROM rollup_state WHERE name = 'calls'") or 0
    except Exception:
        return 0  # no projection cursor in this tree
    return top - cursor


def wait_projected(monitor: Monitor, deadline: float) -> float:
    """When the writer projects on write but after ``flush()`` returns (a catch-up behind the inserts), wait until
    the projection cursor reaches the last row; returns when it did (at once when there is nothing to wait for:
    code whose reads catch up is timed by :func:`read_side_catchup` instead)."""
    from llm_monitor_mw.store import analytics

    engine = engine_of(monitor)
    if getattr(analytics, "Rollups", None) is not None:  # the old code: reads catch up, nothing runs on its own
        return time.perf_counter()
    while _cursor_lag(engine) > 0 and time.perf_counter() < deadline:
        time.sleep(0.005)
    return time.perf_counter()


# ---- CPU clocks ---------------------------------------------------------------------------------------------------


def _schedstat(path: str) -> float | None:
    """On-CPU seconds of a task from ``/proc/.../schedstat`` (nanoseconds, first field)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def writer_clock(writer: Any) -> Callable[[], float]:
    """The writer thread's CPU seconds so far (process CPU when the thread's own clock is not readable)."""
    thread = getattr(writer, "_thread", None)
    if thread is None:
        thread = next((t for t in threading.enumerate() if "writer" in t.name), None)
    tid = getattr(thread, "native_id", None)
    path = f"/proc/self/task/{tid}/schedstat"
    if tid is not None and _schedstat(path) is not None:
        return lambda: _schedstat(path) or 0.0
    return time.process_time


def server_clock(url: str | None) -> Callable[[], float | None]:
    """CPU seconds of the PostgreSQL backends serving ``url``'s database, when the server runs here."""
    if url is None:
        return lambda: None
    import psycopg

    def now() -> float | None:
        with psycopg.connect(url, autocommit=True) as conn:
            pids = [
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
        values = [_schedstat(f"/proc/{pid}/schedstat") for pid in pids]
        return None if not values or None in values else sum(v for v in values if v is not None)

    return now


# ---- databases ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def target(engine: str, tmp: Path, base_url: str | None, label: str) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a PostgreSQL database created for the run (dropped afterwards)."""
    if engine == "sqlite":
        yield str(tmp / f"{label}.db")
        return
    import psycopg

    assert base_url is not None
    name = f"llm_ingest_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base_url)
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster for the run (default settings but for the address), as a superuser base URL."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    found = shutil.which("initdb")
    bindir = bindirs[0] if bindirs else Path(found).parent if found else None
    if bindir is None:
        raise SystemExit("--start-postgres: PostgreSQL server binaries (initdb, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="llm-monitor-ingest-pg-"))
    data = root / "data"
    data.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")

    def run(*cmd: str) -> None:
        full = ("runuser", "-u", "postgres", "--", *cmd) if as_root else cmd
        subprocess.run(full, check=True, capture_output=True, timeout=120, cwd="/")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
    run(str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l", str(root / "log"), "-o", options)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(Exception):
            run(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")
        shutil.rmtree(root, ignore_errors=True)


# ---- the run ------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    engine: str
    kind: str
    records: int
    seconds: float
    cpu_us: float
    server_us: float | None
    catchup: float
    catchup_cpu_us: float
    note: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def effective(self) -> float:
        return self.records / (self.seconds + self.catchup)


def run_once(url: str, kind: str, n: int, engine: str) -> Result:
    monitor = Monitor(url, max_queue=n + 1000)
    try:
        writer = writer_of(monitor)
        warm = capture(monitor, kind, 200, offset=10_000_000)  # connection, schema, pricing tables, caches
        for p in warm:
            writer.submit(p)
        if not monitor.flush(60):
            raise RuntimeError("warm-up flush timed out")
        items = capture(monitor, kind, n)
        before = written(monitor)
        cpu, server = writer_clock(writer), server_clock(url if engine == "postgresql" else None)
        c0, s0 = cpu(), server()
        t0 = time.perf_counter()
        for p in items:
            writer.submit(p)
        if not monitor.flush(600):
            raise RuntimeError("flush timed out")
        flushed = time.perf_counter()
        lag = wait_projected(monitor, flushed + 300) - flushed
        seconds = time.perf_counter() - t0
        c1, s1 = cpu(), server()
        after = written(monitor)
        if after[0] - before[0] != n or after[1:] != before[1:]:
            raise RuntimeError(f"written/dropped/failed went from {before} to {after}, expected +{n} written")
        catchup, catchup_cpu, note = read_side_catchup(monitor)
        if lag > 0.001:
            note += f" ({lag:.2f} s after flush() returned; counted in seconds)"
        server_us = (s1 - s0) / n * 1e6 if s0 is not None and s1 is not None else None
        return Result(engine, kind, n, seconds, (c1 - c0) / n * 1e6, server_us, catchup, catchup_cpu / n * 1e6, note)
    finally:
        monitor.close()


def run(engine: str, kind: str, n: int, runs: int, tmp: Path, base_url: str | None) -> Result:
    results = []
    for r in range(runs):
        with target(engine, tmp, base_url, f"{kind}{r}") as url:
            results.append(run_once(url, kind, n, engine))
    return sorted(results, key=lambda x: x.seconds)[len(results) // 2]  # the median run


def machine_speed() -> float:
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000, help="records per run (default 50,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell; the median run is shown (default 3)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="body kinds: chat,stream,mix")
    parser.add_argument("--db", help="a postgresql:// URL: also measure PostgreSQL (a database per run is created)")
    parser.add_argument("--start-postgres", action="store_true", help="measure PostgreSQL on a throwaway cluster")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--quick", action="store_true", help="2,000 records, one run: checks the script runs")
    args = parser.parse_args()
    n, runs = (2_000, 1) if args.quick else (args.records, args.runs)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if args.db and args.start_postgres:
        parser.error("give --db or --start-postgres, not both")
    postgres = args.db or args.start_postgres
    engines = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if postgres else [])
    if not engines:
        parser.error("nothing to measure")

    tmp = Path(tempfile.mkdtemp(prefix="llm-monitor-ingest-"))
    with throwaway_postgres() if args.start_postgres else contextlib.nullcontext(args.db) as base_url:
        results = [run(engine, kind, n, runs, tmp, base_url) for engine in engines for kind in kinds]
    shutil.rmtree(tmp, ignore_errors=True)

    import llm_monitor_mw

    print(
        f"llm-monitor-mw ingest — {Path(llm_monitor_mw.__file__).parent.parent}, Python {sys.version.split()[0]}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {n:,} records per run, median of {runs}"
    )
    print(f"machine yardstick: sum(range(1000)) = {machine_speed():.1f} µs")
    print()
    print(
        "| engine | body kind | records | seconds | records/s | writer CPU µs/record | server CPU µs/record "
        "| read-side catch-up s | catch-up CPU µs/record | effective records/s | projections |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        server = f"{r.server_us:.0f}" if r.server_us is not None else "—"
        print(
            f"| {r.engine} | {r.kind} | {r.records:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.cpu_us:.0f} | {server} "
            f"| {r.catchup:.2f} | {r.catchup_cpu_us:.0f} | {r.effective:,.0f} | {r.note} |"
        )
    print()
    print(
        "records/s: first submit to flush() returning, the writer thread doing decode, parse, price, insert (and "
        "projections when maintained on write). effective: records / (seconds + read-side catch-up)."
    )


if __name__ == "__main__":
    main()
