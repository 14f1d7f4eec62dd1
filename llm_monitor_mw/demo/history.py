"""Seeding the demo's database with a week of history, once.

Every seeded call is made for real, now, through the real clients, the fake servers and the demo app (so routes,
users, request traces, retries and tool calls are recorded by the same code as live ones), many at a time; the
:func:`~.listeners.backdate` listener then moves each scenario's calls to the time the plan gave it, before they
are stored. An empty database is seeded; one that holds any call is left alone (a second start, or a database
of your own), so seeding happens once and never mixes with data that was there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import httpx

from .listeners import SHIFT_TAG
from .scenarios import Demo, conditions
from .traffic import Step, week

logger = logging.getLogger("llm_monitor_mw.demo")


@dataclass(frozen=True, slots=True)
class Seeded:
    """What :func:`seed` did: how many steps it ran and how long it took (``steps == 0``: nothing, the database
    held calls already)."""

    steps: int
    seconds: float


def has_history(monitor: object) -> bool:
    """Whether the monitor's database holds any call (then the demo does not seed it)."""
    return bool(monitor.store.analytics.has_calls())  # type: ignore[attr-defined]


async def seed(
    demo: Demo,
    app: object,
    *,
    now: float | None = None,
    days: float = 7.0,
    scale: float = 1.0,
    concurrency: int = 96,
) -> Seeded:
    """Seed ``days`` of history up to ``now`` through ``app`` (the demo app), unless the database holds calls.

    Returns once every seeded call is stored.
    """
    if has_history(demo.monitor):
        return Seeded(0, 0.0)
    began = time.monotonic()
    now = time.time() if now is None else now
    steps = week(now, days=days, scale=scale, rng=random.Random(7))
    gate = asyncio.Semaphore(concurrency)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.internal", timeout=60) as http:

        async def run(step: Step) -> None:
            async with gate:
                token = conditions.set(step.conditions)
                try:
                    with demo.monitor.tags(**{SHIFT_TAG: f"{step.at - time.time():.6f}"}):
                        await step.run(demo, http)
                except Exception:
                    logger.exception("a seeded demo step failed")
                finally:
                    conditions.reset(token)

        await asyncio.gather(*(run(step) for step in steps))
    demo.monitor.flush(60)
    return Seeded(len(steps), time.monotonic() - began)
