"""What the demo's users and workers do: chat turns, search, summaries, agent runs with tool calls, code review on a
local model, batch jobs. Each scenario makes its calls through :func:`.calls.send`, with tags, traces and
sessions as a real app would set them.

How the providers behave while a scenario runs (its error rate, an outage, slowness) comes from the
:data:`conditions` context variable: the seeder sets it per scenario (the bad hour of the week), live traffic
leaves the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .calls import Call, CallFailed, Failure, send
from .providers import Clients


@dataclass(frozen=True, slots=True)
class Conditions:
    """How the providers behave: the share of calls whose first attempt fails, a provider that is down (most of
    its calls fail even after retries), and a latency factor."""

    error_rate: float = 0.03
    outage: str | None = None
    slow: float = 1.0


NORMAL = Conditions()
"""Ordinary days."""
conditions: ContextVar[Conditions] = ContextVar("llm_monitor_demo_conditions", default=NORMAL)


@dataclass(frozen=True, slots=True)
class User:
    """A user of the demo app: customer, the chat model of their plan, how busy they are."""

    name: str
    customer: str
    provider: str
    model: str
    weight: float


USERS: tuple[User, ...] = (
    User("alice", "acme", "openai", "gpt-4o-mini", 3.0),
    User("bob", "acme", "openai", "gpt-4o-mini", 2.0),
    User("carol", "globex", "anthropic", "claude-sonnet-4-20250514", 1.5),
    User("dana", "globex", "anthropic", "claude-sonnet-4-20250514", 2.5),
    User("erin", "initech", "gcp.gemini", "gemini-2.5-flash", 2.0),
    User("frank", "initech", "openai", "gpt-4.1", 1.0),
    User("grace", "umbrella", "openai", "gpt-4o-mini", 1.5),
    User("heidi", "umbrella", "gcp.gemini", "gemini-2.5-flash", 1.0),
)
BY_NAME = {u.name: u for u in USERS}
DEVELOPERS = ("dev-ivan", "dev-judy", "dev-mallory")

SYSTEM = "You are Acme Assist, a concise and friendly support assistant. Answer in the user's language."
QUESTIONS = (
    "How do I rotate my API key without downtime?",
    "Why was I charged twice this month?",
    "Can I export my dashboard as CSV?",
    "What's the difference between the Team and Business plans?",
    "My webhook stopped firing yesterday, what changed?",
    "Summarise the last three tickets from this customer.",
    "Write a polite reply declining the refund request.",
    "How many seats do we have left on our plan?",
    "Translate this answer into German, please.",
    "Is there a rate limit on the search endpoint?",
)
SEARCHES = ("sso setup", "invoice vat number", "webhook retries", "delete account", "api rate limits", "csv export")
ANSWER = "Sure - here is what I found. "


def pick_user(rng: random.Random) -> User:
    """A user, the busy ones more often."""
    return rng.choices(USERS, weights=[u.weight for u in USERS])[0]


class Demo:
    """The scenarios, over one set of :class:`Clients` and the monitor that records them (for tags and traces)."""

    def __init__(self, monitor: Any, clients: Clients, rng: random.Random | None = None) -> None:
        self.monitor = monitor
        self.clients = clients
        self.rng = rng or random.Random()

    # ---- helpers ---------------------------------------------------------------------------------------------

    def failure(self, provider: str) -> Failure | None:
        """How this call's first attempts fail under the current :data:`conditions` (``None``: they do not)."""
        cond, rng = conditions.get(), self.rng
        if cond.outage == provider and rng.random() < 0.75:
            status = 529 if provider == "anthropic" else 503
            return Failure(status, times=3 if rng.random() < 0.6 else 1, retry_after=rng.uniform(0.2, 0.6))
        if rng.random() >= cond.error_rate:
            return None
        kind = rng.random()
        if kind < 0.55:
            return Failure(429, times=1, retry_after=rng.uniform(0.3, 1.2))
        if kind < 0.72:
            return Failure(429, times=3, retry_after=rng.uniform(0.2, 0.5))
        if kind < 0.88:
            return Failure(500, times=1, retry_after=rng.uniform(0.1, 0.4))
        if kind < 0.96:
            return Failure(503, times=3, retry_after=0.2)
        return Failure(0, times=1, behavior="disconnect", retry_after=0.1)

    def latency(self, low: float, high: float) -> float:
        """Seconds an answer takes (scaled by the conditions' slowness)."""
        return self.rng.uniform(low, high) * conditions.get().slow

    async def call(self, call: Call, *, fail: bool = True) -> str:
        """Make ``call``; with ``fail``, its first attempts may fail as the :data:`conditions` say."""
        if fail and call.failure is None:
            failure = self.failure(call.provider)
            if failure is not None:
                call = _with(call, failure=failure)
        return await send(self.clients, call)

    @contextlib.contextmanager
    def trace(self, name: str) -> Iterator[None]:
        """``monitor.trace(name)``, or nothing on a monitor without traces."""
        trace = getattr(self.monitor, "trace", None)
        if trace is None:
            yield
            return
        with trace(name):
            yield

    # ---- inbound requests (the app's routes) -----------------------------------------------------------------

    async def quick_chat(self, prompt: str, model: str = "gpt-4o-mini") -> str:
        """``GET /chat?q=...``: one plain chat completion with the fake server's default answer."""
        with self.monitor.tags(feature="chat"):
            return await self.call(
                Call(
                    "openai",
                    model,
                    prompt,
                    system=SYSTEM,
                    input_tokens=24 + len(prompt) // 4,
                    output_tokens=5,
                    latency=0.05,
                ),
                fail=False,
            )

    async def chat_turn(self, user: User, chat_id: str, message: str, turn: int) -> str:
        """``POST /chat/{chat_id}``: one turn of a conversation (the session), on the model of the user's plan;
        streamed most of the time. The old web widget (one stream in eight) does not ask for usage."""
        rng = self.rng
        history: list[tuple[str, str]] = []
        for k in range(min(turn, 4)):  # the last few turns go with the new message
            history += [("user", QUESTIONS[(turn + k) % len(QUESTIONS)]), ("assistant", ANSWER * 3)]
        stream = rng.random() < 0.65
        call = Call(
            user.provider,
            user.model,
            message,
            system=SYSTEM,
            history=tuple(history),
            input_tokens=int(350 + 220 * turn + rng.uniform(0, 300)),
            output_tokens=int(rng.uniform(40, 260)),
            stream=stream,
            stream_usage=rng.random() > 0.125,
            latency=self.latency(0.15, 0.9),
        )
        with self.monitor.tags(feature="chat", session=chat_id, customer=user.customer):
            return await self.call(call)

    async def search(self, user: User, query: str) -> str:
        """``GET /search``: embed the query, then answer from the documents found (RAG)."""
        rng = self.rng
        with self.monitor.tags(feature="search", customer=user.customer):
            await self.call(
                Call(
                    "openai",
                    "text-embedding-3-small",
                    query,
                    api="embeddings",
                    input_tokens=len(query) // 3 + 4,
                    output_tokens=0,
                    latency=self.latency(0.02, 0.08),
                )
            )
            return await self.call(
                Call(
                    "openai",
                    "gpt-4.1-mini",
                    f"Answer from these documents: {query}",
                    system=SYSTEM,
                    input_tokens=int(rng.uniform(1800, 3600)),
                    output_tokens=int(rng.uniform(120, 320)),
                    latency=self.latency(0.2, 0.7),
                )
            )

    async def summarize(self, user: User, doc_id: str) -> str:
        """``POST /summarize/{doc_id}``: a long document summarised (its content is never stored: see the
        demo's privacy listener)."""
        rng = self.rng
        provider, model = rng.choice((("anthropic", "claude-3-5-haiku-latest"), ("gcp.gemini", "gemini-2.5-flash")))
        with self.monitor.tags(feature="summarize", customer=user.customer):
            return await self.call(
                Call(
                    provider,
                    model,
                    f"Summarise document {doc_id} for the account team.",
                    input_tokens=int(rng.uniform(4000, 14000)),
                    output_tokens=int(rng.uniform(200, 500)),
                    stream=rng.random() < 0.3,
                    latency=self.latency(0.3, 1.2),
                )
            )

    async def agent(self, user: User, task: str) -> str:
        """``POST /agent/{task}``: an agent inside one inbound request: plan with tools, run them, answer. The
        request is the trace; ``plan``/``tools``/``answer`` are its spans."""
        rng = self.rng
        with self.monitor.tags(feature="agent", customer=user.customer):
            tools = ("search_docs", "lookup_order", "create_ticket")
            with self.trace("plan"):
                wanted = tuple(rng.sample(tools, rng.choice((1, 1, 2))))
                await self.call(
                    Call(
                        "openai",
                        "gpt-4.1",
                        f"Task: {task}. Decide which tools to use.",
                        system=SYSTEM,
                        input_tokens=int(rng.uniform(900, 1500)),
                        output_tokens=int(rng.uniform(30, 70)),
                        tools=tools,
                        tool_calls=wanted,
                        latency=self.latency(0.2, 0.5),
                    )
                )
            with self.trace("tools"):
                if "search_docs" in wanted:
                    await self.call(
                        Call(
                            "openai",
                            "text-embedding-3-small",
                            task,
                            api="embeddings",
                            input_tokens=12,
                            output_tokens=0,
                            latency=self.latency(0.02, 0.06),
                        )
                    )
            with self.trace("answer"):
                return await self.call(
                    Call(
                        "openai",
                        "gpt-4.1",
                        f"Task: {task}. Write the final answer.",
                        system=SYSTEM,
                        input_tokens=int(rng.uniform(2000, 3500)),
                        output_tokens=int(rng.uniform(150, 300)),
                        stream=True,
                        latency=self.latency(0.3, 0.8),
                    )
                )

    # ---- workers (outside any inbound request) ---------------------------------------------------------------

    async def support_agent(self, ticket: str) -> None:
        """A support agent working one ticket: a few steps on Claude, each asking for a tool, then the reply.
        One trace per run; the ticket is the session (a ticket may take several runs)."""
        rng = self.rng
        steps = rng.choice((2, 3, 3, 4, 5))
        tools = ("lookup_order", "search_docs", "create_ticket", "send_reply")
        with self.trace("support-agent"), self.monitor.tags(feature="support", session=ticket):
            context = int(rng.uniform(1200, 2000))
            for step in range(1, steps + 1):
                last = step == steps
                wanted: tuple[str, ...] = ("send_reply",) if last else (rng.choice(tools[:3]),)
                with self.trace(f"step {step}"):
                    await self.call(
                        Call(
                            "anthropic",
                            "claude-sonnet-4-20250514",
                            f"Ticket {ticket}: next step.",
                            system=SYSTEM,
                            input_tokens=context,
                            output_tokens=int(rng.uniform(40, 110 if not last else 380)),
                            tools=tools,
                            tool_calls=wanted,
                            latency=self.latency(0.3, 0.9),
                        )
                    )
                context += int(rng.uniform(300, 900))

    async def code_review(self, developer: str, pr: int) -> None:
        """A developer's code review on local models (Ollama: priced at zero), one call per changed file, streamed."""
        rng = self.rng
        with self.trace("code-review"), self.monitor.tags(feature="code-review", user=developer):
            for n in range(rng.choice((1, 2, 3))):
                await self.call(
                    Call(
                        "ollama",
                        "qwen2.5-coder:7b",
                        f"Review file {n + 1} of PR #{pr}.",
                        input_tokens=int(rng.uniform(800, 3000)),
                        output_tokens=int(rng.uniform(60, 200)),
                        stream=True,
                        latency=self.latency(0.4, 1.5),
                    )
                )
            await self.call(
                Call(
                    "ollama",
                    "llama3.2:3b",
                    f"Summarise the review of PR #{pr}.",
                    input_tokens=600,
                    output_tokens=int(rng.uniform(40, 90)),
                    latency=self.latency(0.2, 0.6),
                )
            )

    async def classify(self, batch: int) -> None:
        """The ticket classifier: a small batch on Gemini Flash-Lite, some calls streamed."""
        rng = self.rng
        with self.trace("ticket-classifier"), self.monitor.tags(feature="classify"):
            for n in range(rng.randint(3, 8)):
                await self.call(
                    Call(
                        "gcp.gemini",
                        "gemini-2.5-flash-lite",
                        f"Classify ticket {batch}-{n}.",
                        input_tokens=int(rng.uniform(300, 900)),
                        output_tokens=int(rng.uniform(5, 20)),
                        stream=rng.random() < 0.3,
                        latency=self.latency(0.05, 0.2),
                    )
                )

    async def nightly_eval(self, cases: int) -> None:
        """The nightly evaluation: a reasoning model answers, Gemini Pro judges (reasoning tokens on both); four
        cases at a time, each a span of the run's trace."""
        rng = self.rng

        async def case(n: int) -> None:
            with self.trace(f"case {n}"):
                await self.call(
                    Call(
                        "openai",
                        "o4-mini",
                        f"Eval case {n}.",
                        api="responses",
                        input_tokens=int(rng.uniform(600, 1500)),
                        output_tokens=int(rng.uniform(200, 600)),
                        reasoning_tokens=int(rng.uniform(100, 180)),
                        latency=self.latency(0.3, 1.0),
                    )
                )
                await self.call(
                    Call(
                        "gcp.gemini",
                        "gemini-2.5-pro",
                        f"Judge eval case {n}.",
                        input_tokens=int(rng.uniform(1200, 2500)),
                        output_tokens=int(rng.uniform(60, 150)),
                        reasoning_tokens=int(rng.uniform(30, 55)),
                        latency=self.latency(0.3, 0.8),
                    )
                )

        with self.trace("nightly-eval"), self.monitor.tags(feature="eval"):
            await _at_most(4, [case(n + 1) for n in range(cases)])

    async def backfill(self, documents: int) -> None:
        """A one-off backfill of long summaries on GPT-4.1, eight at a time: the spend spike that trips the daily
        budget."""
        rng = self.rng

        async def one(n: int) -> None:
            await self.call(
                Call(
                    "openai",
                    "gpt-4.1",
                    f"Rewrite the summary of archived document {n}.",
                    input_tokens=int(rng.uniform(6000, 9000)),
                    output_tokens=int(rng.uniform(900, 1400)),
                    latency=self.latency(0.3, 0.8),
                )
            )

        with self.trace("backfill-summaries"), self.monitor.tags(feature="backfill"):
            await _at_most(8, [one(n + 1) for n in range(documents)])


async def _at_most(n: int, coros: list[Any]) -> None:
    """Run ``coros`` concurrently, ``n`` at a time; a failed call ends only its own coroutine."""
    gate = asyncio.Semaphore(n)

    async def run(coro: Any) -> None:
        async with gate:
            await guarded(coro)

    await asyncio.gather(*(run(c) for c in coros))


def _with(call: Call, **changes: Any) -> Call:
    from dataclasses import replace

    return replace(call, **changes)


async def guarded(coro: Any) -> None:
    """Await a scenario; a provider error ends it (the failed attempts are recorded), nothing else is hidden."""
    with contextlib.suppress(CallFailed):
        await coro
