"""The demo command: start the fake providers and the monitor, seed a week on the first start, serve the app."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any

from ..monitor import Monitor
from . import alerting
from .app import build_app
from .history import Seeded, seed
from .listeners import backdate, keep_private
from .providers import PRICES, Clients, FakeProviders
from .scenarios import Demo

DEFAULT_DB = "llm_monitor_demo.db"
"""The demo's database file, in the current directory (a name no other tool's file is likely to have)."""


@contextlib.contextmanager
def open_demo(db: str, **monitor_options: Any) -> Iterator[tuple[Monitor, FakeProviders]]:
    """The fake providers and a monitor on ``db`` that names them (``hosts=``), prices Ollama at zero, captures
    content (but not the private kind) and backdates seeded calls."""
    with FakeProviders() as providers:
        options: dict[str, Any] = {"hosts": providers.hosts, "prices": PRICES, "capture_content": True}
        with Monitor(db, **{**options, **monitor_options}) as monitor:
            monitor.add_listener(backdate)
            monitor.add_listener(keep_private)
            yield monitor, providers


def new_demo(monitor: Monitor, providers: FakeProviders, rng: random.Random | None = None) -> Demo:
    """The scenarios over fresh clients (clients belong to one event loop: make them in the loop that uses them)."""
    return Demo(monitor, Clients.build(monitor, providers), rng)


async def seed_history(monitor: Monitor, providers: FakeProviders, **options: Any) -> Seeded:
    """Seed a week of history unless the database holds calls (see :func:`.history.seed`)."""
    demo = new_demo(monitor, providers, random.Random(11))
    try:
        return await seed(demo, build_app(demo), **options)
    finally:
        await demo.clients.aclose()


def main(argv: list[str] | None = None) -> None:
    """Run the demo until interrupted: the fake providers, the app on ``--port``, calls recorded in ``--db``."""
    parser = argparse.ArgumentParser(
        description="Run the llm-monitor-mw demo on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8000, help="the demo app's port")
    parser.add_argument("--db", default=DEFAULT_DB, help="the SQLite file the calls are recorded in")
    args = parser.parse_args(argv)
    import uvicorn

    logging.basicConfig(level=logging.WARNING)
    with open_demo(args.db) as (monitor, providers):
        print(f"database:        {args.db}", flush=True)
        seeded = asyncio.run(seed_history(monitor, providers))
        if seeded.steps:
            print(f"seeded:          a week of history ({seeded.steps} steps) in {seeded.seconds:.1f} s", flush=True)
        else:
            print("seeded:          no (the database already holds calls)", flush=True)
        alerting.configure(monitor)
        demo = new_demo(monitor, providers)
        app = build_app(demo, live_traffic=True)
        for name in providers.ports:
            print(f"fake {name + ':':<11} {providers.url(name)}")
        print(f"demo app:        http://127.0.0.1:{args.port}/chat?q=hello")
        print(f"monitoring:      http://127.0.0.1:{args.port}/monitoring/  (API: /monitoring/api/requests)", flush=True)
        try:
            uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        finally:
            with contextlib.suppress(Exception):
                asyncio.run(demo.clients.aclose())
