"""``monitor.trace(name)``: the calls of one agent run or job share a trace; nested blocks are its spans.

Real parts only: the ``openai`` SDK through the monitor's transports against the bundled fake LLM server, asyncio
tasks and thread pools, Starlette (ASGI) and Flask (WSGI) apps behind the attribution middleware.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from llm_monitor_mw import CallRecord, Monitor
from llm_monitor_mw.context import MAX_TRACE_DEPTH, MAX_TRACE_NAME, current_inbound, current_tags, current_trace
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.middleware import AttributionMiddleware

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def fresh_context() -> Any:
    """Each test starts outside any trace, tags or inbound request, whatever ran before it on this thread (a
    test elsewhere that leaves an inbound request's context set would make every trace here a span of it)."""
    tokens = [
        (var, var.set(value)) for var, value in ((current_trace, None), (current_inbound, None), (current_tags, {}))
    ]
    yield
    for var, token in reversed(tokens):
        var.reset(token)


class Recorded:
    """A monitor and the records it built (a listener), by the tag ``step`` each call was made with."""

    def __init__(self, path: Path) -> None:
        self.monitor = Monitor(path, flush_interval=0.05)
        self.items: list[CallRecord] = []
        self.monitor.add_listener(self.items.append)

    def by_step(self) -> dict[str, CallRecord]:
        assert self.monitor.flush(timeout=10), "writer did not flush in time"
        assert self.monitor.stats()["failed"] == 0
        out = {r.tags["step"]: r for r in self.items}
        assert len(out) == len(self.items), "every call carries its own step tag"
        return out


@pytest.fixture
def rec(tmp_path: Path) -> Any:
    recorded = Recorded(tmp_path / "calls.db")
    yield recorded
    recorded.monitor.close()


def sync_openai(monitor: Monitor, fake: FakeLLMServer) -> openai.OpenAI:
    http = httpx.Client(transport=monitor.transport())
    return openai.OpenAI(base_url=fake.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def async_openai(monitor: Monitor, fake: FakeLLMServer) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=monitor.async_transport())
    return openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def call(client: openai.OpenAI, monitor: Monitor, step: str) -> None:
    with monitor.tags(step=step):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def acall(client: openai.AsyncOpenAI, monitor: Monitor, step: str) -> None:
    with monitor.tags(step=step):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def fields(record: CallRecord) -> tuple[str | None, str | None, str | None]:
    return record.trace_id, record.trace_name, record.span_name


# ---- nesting --------------------------------------------------------------------------------------------------------


def test_nested_blocks_are_spans_of_the_outermost_trace(rec: Recorded, fake_llm: FakeLLMServer) -> None:
    client, monitor = sync_openai(rec.monitor, fake_llm), rec.monitor
    call(client, monitor, "before")
    with monitor.trace("research agent") as run:
        call(client, monitor, "root")
        with monitor.trace("plan") as plan:
            call(client, monitor, "plan")
            with monitor.trace("search"):
                call(client, monitor, "search")
        call(client, monitor, "after-plan")
    with monitor.trace("research agent") as second:
        call(client, monitor, "second")
    call(client, monitor, "outside")
    steps = rec.by_step()
    assert HEX32.fullmatch(run.trace_id) and HEX32.fullmatch(second.trace_id)
    assert run.trace_id != second.trace_id  # same name, another run
    assert (run.trace_name, run.span_name, run.name) == ("research agent", None, "research agent")
    assert (plan.trace_id, plan.trace_name, plan.span_name, plan.name) == (
        run.trace_id,
        "research agent",
        "plan",
        "plan",
    )
    assert fields(steps["before"]) == fields(steps["outside"]) == (None, None, None)
    assert fields(steps["root"]) == (run.trace_id, "research agent", None)
    assert fields(steps["plan"]) == (run.trace_id, "research agent", "plan")
    assert fields(steps["search"]) == (run.trace_id, "research agent", "plan / search")
    assert fields(steps["after-plan"]) == (run.trace_id, "research agent", None)
    assert fields(steps["second"]) == (second.trace_id, "research agent", None)
    assert current_trace.get() is None


def test_trace_ids_are_unique() -> None:
    from llm_monitor_mw.context import trace

    ids = set()
    for _ in range(1000):
        with trace("job") as t:
            ids.add(t.trace_id)
    assert len(ids) == 1000


def test_names_are_checked_and_bounded() -> None:
    from llm_monitor_mw.context import trace

    with pytest.raises(ValueError), trace("   "):
        pass
    with trace("n" * 10_000) as t:
        assert t.trace_name == "n" * MAX_TRACE_NAME
    with trace(42) as t:  # any object: its str()
        assert t.trace_name == "42"

    def nest(depth: int) -> Any:
        if depth == 0:
            return current_trace.get()
        with trace(f"level{depth}"):
            return nest(depth - 1)

    frame = nest(100)
    assert frame is not None and len(frame.names) == MAX_TRACE_DEPTH  # deeper blocks add no names


# ---- asyncio tasks and thread pools ---------------------------------------------------------------------------------


def test_asyncio_tasks_follow_the_trace(rec: Recorded, fake_llm: FakeLLMServer) -> None:
    monitor = rec.monitor

    async def branch(client: openai.AsyncOpenAI, name: str) -> None:
        with monitor.trace(name):
            await acall(client, monitor, name)

    async def main() -> str:
        client = async_openai(monitor, fake_llm)
        with monitor.trace("fan-out") as run:
            await asyncio.gather(branch(client, "a"), branch(client, "b"), acall(client, monitor, "direct"))
            await asyncio.create_task(acall(client, monitor, "task"))
        await acall(client, monitor, "after")
        return run.trace_id

    trace_id = asyncio.run(main())
    steps = rec.by_step()
    assert fields(steps["a"]) == (trace_id, "fan-out", "a")
    assert fields(steps["b"]) == (trace_id, "fan-out", "b")  # siblings do not see each other's blocks
    assert fields(steps["direct"]) == fields(steps["task"]) == (trace_id, "fan-out", None)
    assert fields(steps["after"]) == (None, None, None)


def test_thread_pools_that_copy_the_context(rec: Recorded, fake_llm: FakeLLMServer) -> None:
    client, monitor = sync_openai(rec.monitor, fake_llm), rec.monitor
    with monitor.trace("batch") as run, ThreadPoolExecutor(2) as pool:
        with monitor.trace("worker"):
            ctx = contextvars.copy_context()
        pool.submit(ctx.run, call, client, monitor, "copied").result()
        pool.submit(call, client, monitor, "plain-pool").result()  # a bare pool thread does not copy the context

        async def offload() -> None:
            await asyncio.to_thread(call, client, monitor, "to-thread")

        asyncio.run(offload())
    steps = rec.by_step()
    assert fields(steps["copied"]) == (run.trace_id, "batch", "worker")
    assert fields(steps["to-thread"]) == (run.trace_id, "batch", None)
    assert fields(steps["plain-pool"]) == (None, None, None)


def test_threads_do_not_leak_into_each_other(rec: Recorded, fake_llm: FakeLLMServer) -> None:
    client, monitor = sync_openai(rec.monitor, fake_llm), rec.monitor
    ids: dict[str, str] = {}
    barrier = threading.Barrier(4)

    def job(name: str) -> None:
        with monitor.trace(name) as t:
            ids[name] = t.trace_id
            barrier.wait(timeout=10)  # every thread is inside its own block at once
            call(client, monitor, name)

    threads = [threading.Thread(target=job, args=(f"job{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    steps = rec.by_step()
    assert len(set(ids.values())) == 4
    for name, record in steps.items():
        assert fields(record) == (ids[name], name, None)


# ---- inside an inbound request -------------------------------------------------------------------------------------


def test_asgi_request_is_the_trace_and_blocks_are_spans(rec: Recorded, fake_llm: FakeLLMServer) -> None:
    monitor = rec.monitor
    aclient = async_openai(monitor, fake_llm)
    sclient = sync_openai(monitor, fake_llm)

    async def agent(request: Request) -> JSONResponse:
        await acall(aclient, monitor, "direct")
        with monitor.trace("agent") as t:
            with monitor.trace("tool"):
                await acall(aclient, monitor, "tool")
            await asyncio.gather(acall(aclient, monitor, "gathered"))
        return JSONResponse({"trace_id": t.trace_id, "trace_name": t.trace_name, "span_name": t.span_name})

    def worker(request: Request) -> JSONResponse:  # a sync endpoint: Starlette runs it in its thread pool
        with monitor.trace("sync step"):
            call(sclient, monitor, "threadpool")
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/agent", agent, methods=["POST"]), Route("/worker", worker, methods=["POST"])],
        middleware=[Middleware(AttributionMiddleware)],
    )
    with TestClient(app) as web:
        answer = web.post("/agent", headers={"X-Request-ID": "req-agent-1"}).json()
        web.post("/worker", headers={"X-Request-ID": "req-worker-1"})
    assert answer == {"trace_id": "req-agent-1", "trace_name": None, "span_name": "agent"}
    steps = rec.by_step()
    assert fields(steps["direct"]) == ("req-agent-1", None, None)
    assert fields(steps["tool"]) == ("req-agent-1", None, "agent / tool")
    assert fields(steps["gathered"]) == ("req-agent-1", None, "agent")
    assert fields(steps["threadpool"]) == ("req-worker-1", None, "sync step")
    for record in steps.values():
        assert record.trace_id == record.inbound_request_id


def test_wsgi_request_is_the_trace(rec: Recorded, fake_llm: FakeLLMServer) -> None:
    monitor = rec.monitor
    client = sync_openai(monitor, fake_llm)
    app = flask.Flask(__name__)

    @app.post("/run")
    def run() -> dict[str, Any]:
        call(client, monitor, "direct")
        with monitor.trace("summarise"):
            call(client, monitor, "inner")
        return {}

    app.wsgi_app = monitor.wsgi_middleware(app.wsgi_app)  # type: ignore[method-assign]
    web = app.test_client()
    web.post("/run", headers={"X-Request-ID": "flask-trace"}).close()
    answer = web.post("/run")  # no header: the middleware makes the request id, which is the trace id
    answer.close()
    steps = rec.items
    assert monitor.flush(timeout=10)
    assert [fields(r) for r in steps[:2]] == [("flask-trace", None, None), ("flask-trace", None, "summarise")]
    made = steps[2].inbound_request_id
    assert made and made != "flask-trace"
    assert [fields(r) for r in steps[2:]] == [(made, None, None), (made, None, "summarise")]
