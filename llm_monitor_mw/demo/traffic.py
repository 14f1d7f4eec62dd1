"""The demo's traffic: what happens, when. A :class:`Step` is one thing a user or a worker does (a chat turn
through the app, an agent run in a worker…); :func:`week` lays out a week of them with a working-hours shape, a
bad hour and a spend spike; :func:`live` keeps making them while the demo runs.

Steps that are inbound requests go through the demo app (``http`` is a client on the app itself, so they pass the
attribution middleware: route, user, request id); worker steps call the scenarios directly.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .scenarios import DEVELOPERS, NORMAL, QUESTIONS, SEARCHES, Conditions, Demo, User, guarded, pick_user

Run = Callable[[Demo, httpx.AsyncClient], Awaitable[None]]
HOUR, DAY = 3600.0, 86400.0

# share of the day's traffic per UTC hour: quiet nights, a morning and an afternoon peak
HOURLY = (0.08, 0.06, 0.05, 0.05, 0.06, 0.1, 0.2, 0.45, 0.75, 0.95, 1.0, 0.95,
          0.8, 0.9, 1.0, 0.95, 0.85, 0.7, 0.55, 0.45, 0.35, 0.25, 0.15, 0.1)  # fmt: skip
WEEKDAY = (1.0, 1.0, 1.0, 1.0, 0.95, 0.4, 0.3)
PEAK_PER_HOUR = 8.0
"""Steps started in a weekday's busiest hour, at scale 1 (chat conversations count once, not per turn)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happens at ``at`` (Unix seconds), under ``conditions``."""

    at: float
    run: Run = field(compare=False)
    conditions: Conditions = NORMAL


# ---- what a step does ----------------------------------------------------------------------------------------


async def _request(http: httpx.AsyncClient, method: str, path: str, user: User, **kw: object) -> None:
    await http.request(method, path, headers={"x-user": user.name}, **kw)  # type: ignore[arg-type]


def chat(user: User, chat_id: str, turn: int, message: str) -> Run:
    """A chat turn: ``POST /chat/{chat_id}``."""
    return lambda _demo, http: _request(http, "POST", f"/chat/{chat_id}", user, json={"message": message, "turn": turn})


def search(user: User, query: str) -> Run:
    """A search: ``GET /search?q=...``."""
    return lambda _demo, http: _request(http, "GET", "/search", user, params={"q": query})


def summarize(user: User, doc: str) -> Run:
    """A document summary: ``POST /summarize/{doc_id}``."""
    return lambda _demo, http: _request(http, "POST", f"/summarize/{doc}", user)


def agent(user: User, task: str) -> Run:
    """An agent run inside a request: ``POST /agent/{task}``."""
    return lambda _demo, http: _request(http, "POST", f"/agent/{task}", user)


def worker(name: str, *args: object) -> Run:
    """A worker scenario: ``Demo.<name>(*args)`` outside any request."""
    return lambda demo, _http: guarded(getattr(demo, name)(*args))


# ---- laying out a week ---------------------------------------------------------------------------------------


def activity(at: float) -> float:
    """How busy the hour starting at ``at`` is, 0..1."""
    t = time.gmtime(at)
    return HOURLY[t.tm_hour] * WEEKDAY[t.tm_wday]


def conversation(rng: random.Random, at: float, user: User, n: int) -> list[Step]:
    """The turns of one chat: a session of 1 to 6 turns, a few seconds to minutes apart."""
    chat_id = f"c{n:05d}"
    turns = rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6))
    steps = []
    for turn in range(turns):
        steps.append(Step(at, chat(user, chat_id, turn, rng.choice(QUESTIONS))))
        at += rng.uniform(15, 240)
    return steps


def pick(rng: random.Random, at: float, n: int) -> list[Step]:
    """A random step (or a conversation's turns) starting at ``at``; ``n`` makes ids unique."""
    user = pick_user(rng)
    kind = rng.random()
    working = HOURLY[time.gmtime(at).tm_hour] >= 0.45
    if kind < 0.40:
        return conversation(rng, at, user, n)
    if kind < 0.60:
        return [Step(at, search(user, rng.choice(SEARCHES)))]
    if kind < 0.68:
        return [Step(at, summarize(user, f"doc-{n % 500:03d}"))]
    if kind < 0.76:
        return [Step(at, agent(user, rng.choice(("triage", "refund", "upgrade"))))]
    if kind < 0.84:
        return [Step(at, worker("support_agent", f"T-{4000 + n % 700}"))]
    if kind < 0.91 and working:
        return [Step(at, worker("code_review", rng.choice(DEVELOPERS), 1200 + n))]
    return [Step(at, worker("classify", n))]


def week(now: float, *, days: float = 7.0, scale: float = 1.0, rng: random.Random | None = None) -> list[Step]:
    """``days`` of steps up to ``now``: working-hours peaks, quiet weekends, a nightly eval at 02:10 UTC, one bad
    hour two days ago (Anthropic overloaded, errors everywhere, slow answers), a backfill job today (the spend
    spike) and a burst of rate limiting in the last minutes (so the demo's alert rule fires at once)."""
    rng = rng or random.Random(7)
    start = now - days * DAY
    bad = math.floor((now - 2 * DAY) / HOUR) * HOUR  # an hour two days back
    hour0 = math.floor(start / HOUR) * HOUR
    steps: list[Step] = []
    n = 0
    for hour in (hour0 + k * HOUR for k in range(int(days * 24) + 2)):
        expected = PEAK_PER_HOUR * scale * activity(hour) * rng.lognormvariate(0, 0.25)
        for _ in range(_poisson(rng, expected)):
            n += 1
            steps += pick(rng, hour + rng.uniform(0, HOUR), n)
        if time.gmtime(hour).tm_hour == 2:
            steps.append(Step(hour + 600, worker("nightly_eval", max(2, round(12 * scale)))))
    day_start = math.floor(now / DAY) * DAY
    spike = max(day_start + 0.3 * min(now - day_start, HOUR), now - 3 * HOUR)
    steps.append(Step(spike, worker("backfill", max(4, round(70 * scale)))))
    for k in range(8):  # the last minutes: rate limited
        steps.append(Step(now - 480 + 55 * k, search(pick_user(rng), rng.choice(SEARCHES)), Conditions(0.7)))
    out = []
    for step in steps:
        if not start <= step.at <= now - 90:
            continue  # outside the range, or so recent that its calls would end in the future
        if bad <= step.at < bad + HOUR:
            step = Step(step.at, step.run, Conditions(error_rate=0.3, outage="anthropic", slow=3.0))
        elif bad - HOUR / 2 <= step.at < bad + 1.5 * HOUR:
            step = Step(step.at, step.run, Conditions(error_rate=0.12, slow=1.5))
        out.append(step)
    return sorted(out, key=lambda s: s.at)


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count (Knuth's method; the means here are small)."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


# ---- live ----------------------------------------------------------------------------------------------------

LIVE = Conditions(error_rate=0.1)
"""Live traffic fails a little more often than the week did, so the rate-limit rule keeps firing."""


async def live(demo: Demo, http: httpx.AsyncClient, *, pause: tuple[float, float] = (3.0, 9.0)) -> None:
    """Start a step every ``pause`` seconds (at random in the range) until cancelled; steps run concurrently.

    A step every 6 s on average: new rows within seconds, yet not so many that after a few minutes the live hour
    towers over the week's busiest hours (a step every 2 s made ~1,800 steps an hour, against ~8 in the history).
    """
    from .scenarios import conditions

    rng, n, running = demo.rng, 100_000, set()
    conditions.set(LIVE)
    while True:
        n += 1
        for step in pick(rng, time.time(), n)[:1]:  # one turn of a conversation now; the next ones later
            task = asyncio.ensure_future(_run_live(demo, http, step.run))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.sleep(rng.uniform(*pause))


async def _run_live(demo: Demo, http: httpx.AsyncClient, run: Run) -> None:
    try:
        await run(demo, http)
    except Exception:  # a live step must never stop the demo
        import logging

        logging.getLogger("llm_monitor_mw.demo").exception("a live demo step failed")
