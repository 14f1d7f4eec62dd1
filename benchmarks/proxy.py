#!/usr/bin/env python3
"""What ``llm-monitor proxy`` adds: direct vs proxied calls to the bundled fake LLM server, interleaved in one run.

Three processes on 127.0.0.1: the fake LLM server, the proxy (``llm-monitor proxy``, recording to a temporary
SQLite file, no dashboard) and this client. Prints a table:

* added wall latency per call (p50, p99) through the proxy vs direct, for a non-streamed chat completion and for
  a 20-chunk stream read to the end, with plain ``httpx``;
* TTFT (first content chunk) direct vs proxied;
* the proxy's CPU per call: its event-loop thread (forwarding + capture on the hot path) and the whole process
  (with the writer thread's parsing, pricing and SQL), from ``/proc`` (Linux);
* streams/s sustained with 50 concurrent 20-chunk streams, direct and proxied, and that every proxied call was
  recorded.

    python benchmarks/proxy.py            # full run (~1 min)
    python benchmarks/proxy.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
STREAM = (
    b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
    b'"messages":[{"role":"user","content":"Say hello"}]}'
)
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
STREAM_HEADERS = {**HEADERS, "x-fake-chunks": "20"}
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(main thread, whole process) CPU seconds of ``pid`` (user + system)."""

    def read(path: str) -> float:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    return read(f"/proc/{pid}/task/{pid}/stat"), read(f"/proc/{pid}/stat")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def call(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    with client.stream("POST", url, content=body, headers=headers) as response:
        for _ in response.iter_raw():
            pass
        assert response.status_code == 200
    return (time.perf_counter() - start) * 1e6


def ttft(client: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    headers = {**STREAM_HEADERS, "x-fake-chunk-delay": "0.002"}
    with client.stream("POST", url, content=STREAM, headers=headers) as response:
        for chunk in response.iter_raw():
            if b'"content":"' in chunk and b'"content":""' not in chunk:
                return (time.perf_counter() - start) * 1000
    raise AssertionError("no content chunk")


def interleaved(direct: Callable[[], float], proxied: Callable[[], float], n: int) -> tuple[list[float], list[float]]:
    for _ in range(max(20, n // 20)):
        direct()
        proxied()
    d: list[float] = []
    p: list[float] = []
    for i in range(n):
        if i % 2:
            d.append(direct())
            p.append(proxied())
        else:
            p.append(proxied())
            d.append(direct())
    return d, p


async def sustained(url: str, concurrency: int, seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with client.stream("POST", url, content=STREAM, headers=STREAM_HEADERS) as response:
                    async for _ in response.aiter_raw():
                        pass
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with few calls")
    args = parser.parse_args()
    n = 100 if args.quick else 1000
    seconds = 2.0 if args.quick else 10.0
    fake_port, proxy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "proxy.db"
        fake = start(["llm_monitor_mw.fake", str(fake_port)], fake_port)
        proxy = start(  # the dashboard is served but never asked for
            [
                "llm_monitor_mw.cli",
                "proxy",
                f"http://127.0.0.1:{fake_port}",
                "--port",
                str(proxy_port),
                "--db",
                str(db),
            ],
            proxy_port,
        )
        try:
            direct_url = f"http://127.0.0.1:{fake_port}/v1/chat/completions"
            proxy_url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
            rows: list[tuple[str, float, float, float, float, float, float]] = []
            with httpx.Client(timeout=30) as client:
                for label, body, headers in (
                    ("chat, non-streamed", CHAT, HEADERS),
                    ("chat, 20-chunk stream", STREAM, STREAM_HEADERS),
                ):
                    cpu0 = cpu_seconds(proxy.pid)
                    d, p = interleaved(
                        lambda b=body, h=headers: call(client, direct_url, b, h),
                        lambda b=body, h=headers: call(client, proxy_url, b, h),
                        n,
                    )
                    time.sleep(0.5)  # let the writer finish the batch it holds
                    cpu1 = cpu_seconds(proxy.pid)
                    calls = n + max(20, n // 20)
                    rows.append(
                        (
                            label,
                            pct(d, 0.5),
                            pct(p, 0.5) - pct(d, 0.5),
                            pct(p, 0.99) - pct(d, 0.99),
                            (cpu1[0] - cpu0[0]) / calls * 1e6,
                            (cpu1[1] - cpu0[1]) / calls * 1e6,
                            statistics.mean(p) - statistics.mean(d),
                        )
                    )
                ttft_direct = [ttft(client, direct_url) for _ in range(n // 10)]
                ttft_proxy = [ttft(client, proxy_url) for _ in range(n // 10)]
            direct_rate = asyncio.run(sustained(direct_url, 50, seconds)) / seconds
            before = cpu_seconds(proxy.pid)
            proxied_streams = asyncio.run(sustained(proxy_url, 50, seconds))
            after = cpu_seconds(proxy.pid)
            proxy_rate = proxied_streams / seconds
        finally:
            proxy.terminate()
            proxy.wait(30)
            fake.terminate()
            fake.wait(10)
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            with_tokens = conn.execute("SELECT count(*) FROM calls WHERE output_tokens = 20").fetchone()[0]
    expected = 2 * (n + max(20, n // 20)) + n // 10 + proxied_streams

    print(f"llm-monitor proxy vs direct, {n} interleaved calls per case (fake LLM, proxy and client on one host)")
    print()
    print(
        f"{'case':<24}{'direct p50':>12}{'added p50':>11}{'added p99':>11}{'added mean':>12}{'proxy loop CPU':>16}"
        f"{'proxy total CPU':>17}"
    )
    print(f"{'':<24}{'µs':>12}{'µs':>11}{'µs':>11}{'µs':>12}{'µs/call':>16}{'µs/call':>17}")
    for label, base, add50, add99, loop_cpu, total_cpu, add_mean in rows:
        print(
            f"{label:<24}{base:>12.0f}{add50:>11.0f}{add99:>11.0f}{add_mean:>12.0f}{loop_cpu:>16.0f}{total_cpu:>17.0f}"
        )
    print()
    print(
        f"TTFT (2 ms between events): direct p50 {pct(ttft_direct, 0.5):.2f} ms, proxied p50 "
        f"{pct(ttft_proxy, 0.5):.2f} ms (added {pct(ttft_proxy, 0.5) - pct(ttft_direct, 0.5):.2f} ms)"
    )
    print(
        f"sustained, 50 concurrent 20-chunk streams for {seconds:.0f} s: direct {direct_rate:.0f} streams/s, "
        f"proxied {proxy_rate:.0f} streams/s (proxy CPU {(after[1] - before[1]) / seconds * 100:.0f}% of a core)"
    )
    print(f"recorded: {stored} of {expected} proxied calls; {with_tokens} full streams with 20 output tokens")
    return 0 if stored == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
