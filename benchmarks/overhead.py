#!/usr/bin/env python3
"""What monitoring adds to the caller: plain vs. monitored clients, interleaved in one run, against the bundled
fake LLM server (run as a separate process on 127.0.0.1 so it does not share our GIL).

Prints a table: caller-thread CPU µs and wall µs (p50, p99) per call for the official ``openai`` SDK and for
plain ``httpx``, non-streaming and streaming; the per-chunk CPU cost of a stream; TTFT seen by the caller; and the
writer's sustained ingest rate into SQLite. CPU is ``time.thread_time()`` of the calling thread, so the writer
thread's work (parsing, pricing, SQL) is not counted against the call: it is reported as ingest.

    python benchmarks/overhead.py            # full run (~1 min)
    python benchmarks/overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.pending import PendingCall
from llm_monitor_mw.capture.providers import Registry
from llm_monitor_mw.capture.transport import Capturer, MonitorTransport
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import Database, Writer

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llm_monitor_mw.fake", str(port)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake server did not start")


def measure(fn: Callable[[], Any]) -> tuple[float, float]:
    c0, w0 = time.thread_time(), time.perf_counter()
    fn()
    return (time.thread_time() - c0) * 1e6, (time.perf_counter() - w0) * 1e6


def interleaved(plain: Callable[[], Any], monitored: Callable[[], Any], n: int) -> dict[str, list[float]]:
    for _ in range(max(20, n // 20)):  # warm up both paths
        plain()
        monitored()
    out: dict[str, list[float]] = {"plain_cpu": [], "plain_wall": [], "mon_cpu": [], "mon_wall": []}
    for i in range(n):
        order = (("plain", plain), ("mon", monitored)) if i % 2 == 0 else (("mon", monitored), ("plain", plain))
        for name, fn in order:
            cpu, wall = measure(fn)
            out[f"{name}_cpu"].append(cpu)
            out[f"{name}_wall"].append(wall)
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def row(label: str, data: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "case": label,
        "plain_cpu_p50": pct(data["plain_cpu"], 0.5),
        "added_cpu_p50": pct(data["mon_cpu"], 0.5) - pct(data["plain_cpu"], 0.5),
        "added_cpu_p99": pct(data["mon_cpu"], 0.99) - pct(data["plain_cpu"], 0.99),
        "added_wall_p50": pct(data["mon_wall"], 0.5) - pct(data["plain_wall"], 0.5),
        "added_wall_p99": pct(data["mon_wall"], 0.99) - pct(data["plain_wall"], 0.99),
    }


def ttft(client: openai.OpenAI, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-fake-chunk-delay": "0.002"}
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append((time.perf_counter() - start) * 1000)
                break
        stream.close()
    return times


class _CannedStream(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Any:
        yield from self.chunks


class _Canned(httpx.BaseTransport):
    """Answers at once from memory: isolates the transport's own cost from network and server noise."""

    def __init__(self, chunks: list[bytes], content_type: bytes) -> None:
        self.chunks = chunks
        self.headers = [
            (b"content-type", content_type),
            (b"x-request-id", b"req_1"),
            (b"x-ratelimit-remaining-requests", b"9999"),
            (b"date", b"Mon"),
            (b"server", b"bench"),
        ]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=self.headers, stream=_CannedStream(self.chunks), request=request)


def hot_path(quick: bool) -> tuple[float, float, float]:
    """(added CPU µs per non-streamed call, per 10-chunk stream, per streamed chunk) on the caller's thread,
    with canned in-memory responses; records go to a sink that drops them, so no writer work interferes."""
    capturer = Capturer(Registry(), lambda _: None, max_body_bytes=1 << 24)
    request = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi " * 200}]}).encode()
    body = [
        b'{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":'
        b'{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,'
        b'"completion_tokens":1,"total_tokens":2}}'
    ]

    def chunk(i: int) -> bytes:
        return (
            b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,'
            b'"delta":{"content":"tok%d"},"finish_reason":null}]}\n\n' % i
        )

    def added(chunks: list[bytes], content_type: bytes, n: int) -> float:
        """Median over many short rounds of (monitored - plain) µs per call; the order alternates per round.

        Paired short rounds cancel most of a shared VM's drift, which swamps a single long measurement."""
        plain = httpx.Client(transport=_Canned(chunks, content_type))
        monitored = httpx.Client(transport=MonitorTransport(capturer, _Canned(chunks, content_type)))

        def run(client: httpx.Client) -> float:
            start = time.thread_time()
            for _ in range(n):
                with client.stream("POST", "https://api.openai.com/v1/chat/completions", content=request) as r:
                    for _ in r.iter_raw():
                        pass
            return (time.thread_time() - start) / n * 1e6

        diffs = []
        for rnd in range(10 if quick else 60):
            if rnd % 2 == 0:
                p, m = run(plain), run(monitored)
            else:
                m, p = run(monitored), run(plain)
            diffs.append(m - p)
        return statistics.median(diffs)

    per_call = added(body, b"application/json", 200)
    small = added([chunk(i) for i in range(10)], b"text/event-stream", 100)
    large = added([chunk(i) for i in range(1000)], b"text/event-stream", 5)
    return per_call, small, (large - small) / 990


def machine_speed() -> float:
    """µs for ``sum(range(1000))``: a yardstick to scale these figures to other machines."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def ingest_rate(tmp: Path, n: int) -> tuple[float, float]:
    """(records/s through prepare+insert with realistic captured calls, records/s insert only)."""
    body = (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"Hello from the fake LLM."},"finish_reason":"stop"}],"usage":'
        b'{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16,"prompt_tokens_details":{"cached_tokens":2},'
        b'"completion_tokens_details":{"reasoning_tokens":1}}}'
    )
    request = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
    route = Registry().resolve("POST", "api.openai.com", None, "/v1/chat/completions")
    assert route is not None
    headers = httpx.Headers({"content-type": "application/json", "x-request-id": "req_1"})

    monitor = Monitor(tmp / "ingest.db", max_queue=n + 10)
    items = []
    for i in range(n):
        p = PendingCall(
            route,
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
            request,
            time.time(),
            0.0,
            ("bench", i),
            1,
            {},
            lambda _: None,
            1 << 24,
        )
        p.attach(200, headers)
        p.feed(body)
        p.finish("complete")
        items.append(p)
    start = time.perf_counter()
    for p in items:
        monitor.writer.submit(p)
    monitor.flush()
    full = n / (time.perf_counter() - start)
    monitor.close()

    records = [
        CallRecord(
            started_at=time.time(),
            provider="openai",
            operation="chat",
            endpoint="/v1/chat/completions",
            response_model="gpt-4o-mini",
            status_code=200,
            input_tokens=11,
            output_tokens=5,
            total_tokens=16,
            cost_usd=1e-5,
            duration_ms=12.5,
        )
        for _ in range(n)
    ]
    writer = Writer(Database(tmp / "raw.db"), lambda r: r, max_queue=n + 10)
    start = time.perf_counter()
    for r in records:
        writer.submit(r)
    writer.flush()
    raw = n / (time.perf_counter() - start)
    writer.close()
    return full, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations; checks the script runs")
    args = parser.parse_args()
    n = 60 if args.quick else 1500
    n_stream = 20 if args.quick else 300
    hot = hot_path(args.quick)
    proc, base = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="llm-monitor-bench-"))
    try:
        monitor = Monitor(tmp / "bench.db")
        plain_oai = openai.OpenAI(base_url=base + "/v1", api_key="k", http_client=httpx.Client())
        mon_oai = openai.OpenAI(
            base_url=base + "/v1", api_key="k", http_client=httpx.Client(transport=monitor.transport())
        )
        plain_httpx = httpx.Client()
        mon_httpx = httpx.Client(transport=monitor.transport())
        url = base + "/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}

        def sdk(client: openai.OpenAI) -> Callable[[], Any]:
            return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        def raw(client: httpx.Client, chunks: int | None = None) -> Callable[[], Any]:
            if chunks is None:
                return lambda: client.post(url, json=body).read()
            stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
            headers = {"x-fake-chunks": str(chunks)}

            def go() -> None:
                with client.stream("POST", url, json=stream_body, headers=headers) as r:
                    for _ in r.iter_raw():
                        pass

            return go

        def sdk_stream(client: openai.OpenAI) -> Callable[[], Any]:
            def go() -> None:
                for _ in client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                ):
                    pass

            return go

        rows = [
            row("openai SDK, non-streaming", interleaved(sdk(plain_oai), sdk(mon_oai), n)),
            row("openai SDK, streaming (5 chunks)", interleaved(sdk_stream(plain_oai), sdk_stream(mon_oai), n_stream)),
            row("httpx, non-streaming", interleaved(raw(plain_httpx), raw(mon_httpx), n)),
            row("httpx, stream of 10 chunks", interleaved(raw(plain_httpx, 10), raw(mon_httpx, 10), n_stream)),
            row("httpx, stream of 1000 chunks", interleaved(raw(plain_httpx, 1000), raw(mon_httpx, 1000), n_stream)),
        ]
        per_chunk = (rows[4]["added_cpu_p50"] - rows[3]["added_cpu_p50"]) / 990
        ttft_plain = ttft(plain_oai, n_stream)
        ttft_mon = ttft(mon_oai, n_stream)
        monitor.flush()
        recorded = monitor.stats()
        monitor.close()
        full, raw_rate = ingest_rate(tmp, 5_000 if args.quick else 100_000)
    finally:
        proc.terminate()
        proc.wait(10)

    print(
        f"llm-monitor-mw overhead — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"openai {openai.__version__}, httpx {httpx.__version__}; n={n} calls (streams: {n_stream}), interleaved"
    )
    print(f"machine yardstick: sum(range(1000)) = {machine_speed():.1f} µs (a typical 2024 laptop: ~8 µs)")
    print()
    print("Transport hot path (caller's thread CPU, canned in-memory responses, median of paired interleaved rounds):")
    print()
    print("| figure | added CPU |")
    print("|---|---:|")
    print(f"| per non-streamed call | {hot[0]:.1f} µs |")
    print(f"| per streamed call of 10 chunks | {hot[1]:.1f} µs |")
    print(f"| per streamed chunk (slope 10→1000 chunks) | {hot[2]:.2f} µs |")
    print()
    print("End to end against the fake server (a separate process) over loopback:")
    print()
    print("| case | plain CPU µs p50 | added CPU µs p50 | added CPU µs p99 | added wall µs p50 | added wall µs p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['plain_cpu_p50']:.0f} | {r['added_cpu_p50']:+.1f} | {r['added_cpu_p99']:+.1f} "
            f"| {r['added_wall_p50']:+.1f} | {r['added_wall_p99']:+.1f} |"
        )
    print()
    print("| figure | value |")
    print("|---|---:|")
    print(f"| added CPU per streamed chunk, end to end (slope 10→1000 chunks) | {per_chunk:.2f} µs |")
    print(
        f"| TTFT p50 plain / monitored | {statistics.median(ttft_plain):.2f} ms / "
        f"{statistics.median(ttft_mon):.2f} ms |"
    )
    print(f"| ingest: captured calls parsed + priced + inserted | {full:,.0f} records/s |")
    print(f"| ingest: records inserted | {raw_rate:,.0f} records/s |")
    print(
        f"| calls recorded during the run (dropped, failed) | {recorded['written']} "
        f"({recorded['dropped']}, {recorded['failed']}) |"
    )


if __name__ == "__main__":
    main()
