"""Does the dashboard starve the host? ``python benchmarks/host_latency.py [--rows N] [--seconds S] [--clients C]``.

A FastAPI host app under uvicorn (its own process) with a cheap sync endpoint (``def ping()``: FastAPI runs it in
anyio's default thread pool, which Starlette also used for the dashboard's pages before the gate) and the monitoring
app mounted at ``/monitoring`` over a database of N seeded calls (default 100,000 over 7 days). A probe (this
process) calls ``/ping`` sequentially for S seconds and records each latency; meanwhile C dashboard clients (another
process, httpx async) load the overview, the requests page and ``api/summary`` in a loop, and on a 503 wait the
``Retry-After`` it names, as a browser tab would.

Modes: ``plain`` (no dashboard load), ``gated`` (the default: ``concurrency`` = CPUs, at least 2), and
``unbounded`` (``concurrency=10_000``, ``queue_timeout=60``: every dashboard request runs at once, as before).
Prints one row per mode: the host endpoint's p50/p99, the p99 ratio against ``plain``, and the dashboard's answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402

DASHBOARD_PATHS = ["/monitoring/", "/monitoring/requests", "/monitoring/api/summary"]
MODES = {"plain": None, "gated": {}, "unbounded": {"concurrency": 10_000, "queue_timeout": 60}}


def serve(db: str, port: int, limits: dict[str, Any]) -> None:
    """The host app: ``GET /ping`` (sync, cheap) and the monitoring app at ``/monitoring``."""
    import uvicorn
    from fastapi import FastAPI

    from llm_monitor_mw import Monitor

    monitor = Monitor(db)
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    app.mount("/monitoring", monitor.asgi_app(**limits))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def dashboard_load(base: str, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` loops over :data:`DASHBOARD_PATHS` for ``seconds``; counts answers by status."""
    counts: dict[str, int] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            n = i
            while time.monotonic() < deadline:
                path = DASHBOARD_PATHS[n % len(DASHBOARD_PATHS)]
                n += 1
                start = time.perf_counter()
                try:
                    response = await http.get(path)
                except httpx.HTTPError as exc:
                    counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1
                    continue
                counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
                if response.status_code == 503:
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                else:
                    latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client(i) for i in range(clients)))
    latencies.sort()
    return {
        "counts": counts,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
    }


def probe(base: str, seconds: float) -> list[float]:
    """Sequential ``GET /ping`` for ``seconds``, 5 ms apart; each latency in ms."""
    samples = []
    with httpx.Client(base_url=base, timeout=30) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            http.get("/ping").raise_for_status()
            samples.append(1000 * (time.perf_counter() - start))
            time.sleep(0.005)
    return samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the host app did not start")


def run_mode(db: Path, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    limits = MODES[mode] or {}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(db), str(port), json.dumps(limits)])
    load: subprocess.Popen[str] | None = None
    try:
        wait_ready(base)
        with httpx.Client(base_url=base, timeout=120) as http:  # warm up: roll-ups, templates, caches
            for path in DASHBOARD_PATHS:
                http.get(path)
        if MODES[mode] is not None:
            command = [sys.executable, __file__, "--load", base, str(args.clients), str(args.seconds + 2)]
            load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            time.sleep(2)  # let the load build up
        samples = probe(base, args.seconds)
        dashboard = json.loads(load.communicate(timeout=args.seconds + 120)[0]) if load else None
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        server.terminate()
        server.wait(timeout=30)
    samples.sort()
    return {
        "mode": mode,
        "n": len(samples),
        "p50": statistics.median(samples),
        "p99": samples[int(0.99 * (len(samples) - 1))],
        "dashboard": dashboard,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--modes", default="plain,gated,unbounded")
    parser.add_argument("--serve", nargs=3, metavar=("DB", "PORT", "LIMITS"), help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=3, metavar=("BASE", "CLIENTS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), json.loads(args.serve[2]))
        return
    if args.load:
        result = asyncio.run(dashboard_load(args.load[0], int(args.load[1]), float(args.load[2])))
        print(json.dumps(result))
        return

    from dashboard import seed  # benchmarks/dashboard.py: direct executemany of realistic rows

    cpus = os.cpu_count()
    print(f"python {platform.python_version()}, {cpus} CPUs; {args.clients} dashboard clients, {args.seconds:g} s each")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "host.db"
        took = seed(db, args.rows, now=time.time(), days=7)
        print(f"seeded {args.rows:,} calls in {took:.1f} s")
        results = [run_mode(db, mode, args) for mode in args.modes.split(",")]
    plain = next((r for r in results if r["mode"] == "plain"), None)
    print()
    print(f"{'mode':<10} {'host p50 ms':>11} {'host p99 ms':>11} {'p99 ratio':>9} {'probes':>7}   dashboard answers")
    for r in results:
        ratio = f"{r['p99'] / plain['p99']:.1f}x" if plain else "-"
        d = r["dashboard"]
        answers = "-"
        if d:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(d["counts"].items()))
            answers = f"{counts}; dashboard p50/p99 {d['p50_ms']:.0f}/{d['p99_ms']:.0f} ms"
        print(f"{r['mode']:<10} {r['p50']:>11.1f} {r['p99']:>11.1f} {ratio:>9} {r['n']:>7}   {answers}")


if __name__ == "__main__":
    main()
