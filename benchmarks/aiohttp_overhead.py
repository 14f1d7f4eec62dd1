#!/usr/bin/env python3
"""What aiohttp capture adds to the caller: a plain ``aiohttp.ClientSession`` vs one with the monitor's middleware,
interleaved in one run, against the bundled fake LLM server (a separate process on 127.0.0.1).

Prints two tables:

1. per call, end to end: event-loop-thread CPU µs and wall µs (p50, p99) for a non-streamed chat call and a
   streamed one (``--chunks`` SSE events read line by line, as SDKs do); the added CPU per chunk follows from the
   two differences. CPU is ``time.thread_time()`` of the loop's thread, so the writer thread's work (parsing,
   pricing, SQL) is not counted.
2. per chunk, in process (no sockets): a ``StreamReader`` fed and drained chunk by chunk, plain, tee'd on the feed
   side (what ships: ``feed_data`` of a swapped reader class) and tee'd on the read side (a wrapper around
   ``readany`` — the alternative that was measured and not chosen).

    python benchmarks/aiohttp_overhead.py            # full run (~30 s)
    python benchmarks/aiohttp_overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.streams import StreamReader

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture import aiohttp as capture_aiohttp
from llm_monitor_mw.capture.aiohttp import CaptureMiddleware
from llm_monitor_mw.capture.pending import PendingCall
from llm_monitor_mw.capture.providers import Registry
from llm_monitor_mw.capture.transport import Capturer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import start_server

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
CHAT = "/v1/chat/completions"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    cpu, wall = time.thread_time(), time.perf_counter()
    await fn()
    return (time.thread_time() - cpu) * 1e6, (time.perf_counter() - wall) * 1e6


async def end_to_end(url: str, monitor: Monitor, calls: int, chunks: int) -> dict[str, list[tuple[float, float]]]:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    results: dict[str, list[tuple[float, float]]] = {}

    # The caller's path alone: records are built and dropped, no writer thread competes for the GIL.
    unwritten = Capturer(Registry(), lambda pending: None, max_body_bytes=1 << 24)

    async def noop(request: Any, handler: Any) -> Any:  # what any middleware costs in aiohttp itself
        return await handler(request)

    async with (
        aiohttp.ClientSession() as plain,
        aiohttp.ClientSession(middlewares=(noop,)) as noop_session,
        aiohttp.ClientSession(middlewares=(monitor.aiohttp_middleware(),)) as monitored,
        aiohttp.ClientSession(middlewares=(CaptureMiddleware(unwritten),)) as captured_only,
    ):

        def one(session: aiohttp.ClientSession, stream: bool) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                headers = {"x-fake-chunks": str(chunks)} if stream else {}
                async with session.post(url + CHAT, json=stream_body if stream else body, headers=headers) as resp:
                    if stream:
                        async for _line in resp.content:
                            pass
                    else:
                        await resp.read()

            return run

        sessions = (
            ("plain", plain),
            ("no-op middleware", noop_session),
            ("captured, not written", captured_only),
            ("monitored", monitored),
        )
        for _, session in sessions:  # warm up connections, caches, the writer
            for stream in (False, True):
                for _ in range(50):
                    await one(session, stream)()
        for i in range(calls):
            for name, session in sessions[:: 1 if i % 2 else -1]:
                for stream in (False, True):
                    key = f"{name} {'stream' if stream else 'body'}"
                    results.setdefault(key, []).append(await timed(one(session, stream)))
    return results


class _Protocol:
    """The little of aiohttp's protocol a StreamReader calls."""

    connected = True

    def pause_reading(self) -> None: ...

    def resume_reading(self, resume_parser: bool = True) -> None: ...


async def in_process(chunks: int, rounds: int) -> dict[str, float]:
    """µs per chunk of feeding then reading one SSE-sized chunk, for each way of tee-ing."""
    loop = asyncio.get_running_loop()
    chunk = b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":" word"}}]}\n\n'
    registry = Registry()
    route = registry.resolve("POST", "api.openai.com", None, CHAT)

    def pending() -> PendingCall:
        call = PendingCall(route, "POST", "h", CHAT, None, 0.0, 0.0, ("x", 1), 1, {}, lambda p: None, 1 << 24)
        call.attach(200, {"content-type": "text/event-stream"})
        return call

    async def plain_run() -> None:
        reader = StreamReader(_Protocol(), 1 << 16, loop=loop)  # type: ignore[arg-type]
        for _ in range(chunks):
            reader.feed_data(chunk)
            await reader.readany()

    async def feed_side() -> None:
        reader = StreamReader(_Protocol(), 1 << 16, loop=loop)  # type: ignore[arg-type]
        call = pending()
        ref = capture_aiohttp._ResponseRef(call, capture_aiohttp._response_gone)  # any weak-referenceable object
        ref.key = id(reader)
        capture_aiohttp._taps[id(reader)] = capture_aiohttp._Tap(None, call, ref)  # type: ignore[arg-type]
        reader.__class__ = capture_aiohttp._TapReader
        for _ in range(chunks):
            reader.feed_data(chunk)
            await reader.readany()
        reader.feed_eof()

    async def read_side() -> None:
        reader = StreamReader(_Protocol(), 1 << 16, loop=loop)  # type: ignore[arg-type]
        call = pending()
        feed = call.feeder()

        async def readany() -> bytes:
            data = await reader.readany()
            call.read_at = time.perf_counter()
            feed(data)
            return data

        for _ in range(chunks):
            reader.feed_data(chunk)
            await readany()

    async def read_side_lines() -> None:  # SDKs read SSE line by line: the read side feeds once per line
        reader = StreamReader(_Protocol(), 1 << 16, loop=loop)  # type: ignore[arg-type]
        call = pending()
        feed = call.feeder()

        async def readline() -> bytes:
            data = await reader.readline()
            call.read_at = time.perf_counter()
            feed(data)
            return data

        for _ in range(chunks):
            reader.feed_data(chunk)
            await readline()
            await readline()

    async def plain_lines() -> None:
        reader = StreamReader(_Protocol(), 1 << 16, loop=loop)  # type: ignore[arg-type]
        for _ in range(chunks):
            reader.feed_data(chunk)
            await reader.readline()
            await reader.readline()

    async def feed_side_lines() -> None:
        reader = StreamReader(_Protocol(), 1 << 16, loop=loop)  # type: ignore[arg-type]
        call = pending()
        ref = capture_aiohttp._ResponseRef(call, capture_aiohttp._response_gone)
        ref.key = id(reader)
        capture_aiohttp._taps[id(reader)] = capture_aiohttp._Tap(None, call, ref)  # type: ignore[arg-type]
        reader.__class__ = capture_aiohttp._TapReader
        for _ in range(chunks):
            reader.feed_data(chunk)
            await reader.readline()
            await reader.readline()
        reader.feed_eof()

    variants = (
        ("readany: plain", plain_run),
        ("readany: feed side (shipped)", feed_side),
        ("readany: read side", read_side),
        ("readline: plain", plain_lines),
        ("readline: feed side (shipped)", feed_side_lines),
        ("readline: read side", read_side_lines),
    )
    out: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, fn in variants:
            cpu = time.thread_time()
            await fn()
            out.setdefault(name, []).append((time.thread_time() - cpu) * 1e6 / chunks)
    return {name: statistics.median(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--chunks", type=int, default=100)
    args = parser.parse_args()
    calls = 40 if args.quick else 400
    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            monitor = Monitor(Path(tmp) / "bench.db")
            try:
                results = asyncio.run(end_to_end(url, monitor, calls, args.chunks))
                monitor.flush(30)
                recorded = monitor.stats()
            finally:
                monitor.close()
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"\n## aiohttp, end to end ({calls} calls each, streams of {args.chunks} chunks; µs on the loop thread)\n")
    print("| client | CPU p50 | CPU p99 | wall p50 | wall p99 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians: dict[str, float] = {}
    for key, values in results.items():
        cpu = [c for c, _ in values]
        wall = [w for _, w in values]
        medians[key] = statistics.median(cpu)
        print(f"| {key} | {pct(cpu, 0.5):.0f} | {pct(cpu, 0.99):.0f} | {pct(wall, 0.5):.0f} | {pct(wall, 0.99):.0f} |")
    print(f"\nany middleware (aiohttp's own chain): {medians['no-op middleware body'] - medians['plain body']:.1f} µs")
    alone = medians["captured, not written body"] - medians["plain body"]
    alone_stream = medians["captured, not written stream"] - medians["plain stream"]
    print(f"caller's path alone (no writer): {alone:.1f} µs per call, {alone_stream:.1f} µs per stream")
    per_call = medians["monitored body"] - medians["plain body"]
    per_stream = medians["monitored stream"] - medians["plain stream"]
    print(f"with the writer running: added CPU per call (body): {per_call:.1f} µs; per stream: {per_stream:.1f} µs; ")
    print(f"so per chunk: {(per_stream - per_call) / args.chunks:.2f} µs (difference of medians, noisy)")
    print(f"recorded: {recorded.get('written')} written, {recorded.get('dropped')} dropped")

    rounds = 5 if args.quick else 25
    per_chunk = asyncio.run(in_process(2_000, rounds))
    print(f"\n## StreamReader, in process (feed one SSE chunk, read it; median of {rounds} x 2000 chunks)\n")
    print("| tee | CPU µs per chunk | added |")
    print("| --- | ---: | ---: |")
    for name, value in per_chunk.items():
        base = per_chunk[name.split(":")[0] + ": plain"]
        print(f"| {name} | {value:.2f} | {value - base:+.2f} |")


if __name__ == "__main__":
    main()
