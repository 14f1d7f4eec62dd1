"""Error responses the SDKs close unread before a retry still carry the provider's message.

The real openai and anthropic SDKs (sync and async) retry a streamed request after 429s from the bundled fake
server; a small hostile server checks the drain stays bounded in time and bytes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.transport import DRAIN_BYTES
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.store.queries import Filters
from tests.conftest import only_record, records
from tests.httplibs import lib_id, libs_for_anthropic, libs_for_openai

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
CLOSED_EARLY = "response closed by the caller before the end of the body"
OPENAI_429 = "Rate limit reached for gpt-4o-mini"
ANTHROPIC_429 = "This request would exceed the rate limit for your organization."
LIBS = libs_for_openai()  # httpx2 and httpx (both when openai >= 3)


def rate_limited(key: str, times: int = 2) -> dict[str, str]:
    return {"x-fake-status": "429", "x-fake-fail-times": str(times), "x-fake-key": key}


def assert_rate_limited_attempts(monitor: Monitor, message: str, n_limited: int = 2) -> None:
    rows = records(monitor)
    assert [r["status_code"] for r in rows] == [429] * n_limited + [200]
    assert [r["attempt"] for r in rows] == list(range(1, n_limited + 2))
    for row in rows[:n_limited]:
        assert message in row["error"] and CLOSED_EARLY not in row["error"], row["error"]
        assert row["ok"] is False and row["error_type"] not in (None, "http_429")  # the provider's own type
    found, _ = monitor.store.queries.requests(Filters(q="rate limit"), limit=100)
    assert len(found) == n_limited


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_openai_stream_retries_keep_the_rate_limit_message(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    http = lib.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=3)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=rate_limited(f"oa-sync-{lib_id(lib)}")
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from the fake LLM."
    assert_rate_limited_attempts(monitor, OPENAI_429)


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_openai_async_stream_retries_keep_the_rate_limit_message(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    async def main() -> str:
        http = lib.AsyncClient(transport=monitor.async_transport())
        async with openai.AsyncOpenAI(
            base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=3
        ) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_headers=rate_limited(f"oa-async-{lib_id(lib)}"),
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "Hello from the fake LLM."
    assert_rate_limited_attempts(monitor, OPENAI_429)


@pytest.mark.parametrize("lib", libs_for_anthropic(), ids=lib_id)
def test_anthropic_retries_keep_the_rate_limit_message(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    http = lib.Client(transport=monitor.transport())
    client = anthropic.Anthropic(base_url=fake_llm.base_url, api_key="sk-ant-test", http_client=http, max_retries=3)
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=10,
        messages=MESSAGES,
        extra_headers=rate_limited(f"an-sync-{lib_id(lib)}"),
    ) as stream:
        assert stream.get_final_text() == "Hello from the fake LLM."
    assert_rate_limited_attempts(monitor, ANTHROPIC_429)


@pytest.mark.parametrize("lib", libs_for_anthropic(), ids=lib_id)
def test_anthropic_async_retries_keep_the_rate_limit_message(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    async def main() -> str:
        http = lib.AsyncClient(transport=monitor.async_transport())
        async with anthropic.AsyncAnthropic(
            base_url=fake_llm.base_url, api_key="sk-ant-test", http_client=http, max_retries=3
        ) as client:
            async with client.messages.stream(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=MESSAGES,
                extra_headers=rate_limited(f"an-async-{lib_id(lib)}"),
            ) as stream:
                return await stream.get_final_text()

    assert asyncio.run(main()) == "Hello from the fake LLM."
    assert_rate_limited_attempts(monitor, ANTHROPIC_429)


# ---- bounds: a hostile server ----------------------------------------------------------------------------------

ERROR_JSON = b'{"error": {"message": "Rate limit reached (hostile)", "type": "rate_limit"}}'


async def _stall(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"error": {"message": "Rate limit'  # then nothing more for a long time
        await asyncio.sleep(3)
        yield b' reached"}}'

    return StreamingResponse(body(), 429, media_type="application/json")


async def _trickle(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"error": {"message": "'
        for _ in range(300):  # three seconds of one byte every 10 ms
            await asyncio.sleep(0.01)
            yield b"x"
        yield b'"}}'

    return StreamingResponse(body(), 503, media_type="application/json")


async def _big(request: Request) -> Response:
    padding = b" " * (DRAIN_BYTES + 1)
    return Response(ERROR_JSON[:-1] + padding + b"}", 500, media_type="application/json")


async def _small(request: Request) -> Response:
    return Response(ERROR_JSON, 429, media_type="application/json")


@contextmanager
def hostile_server() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/stall/v1/chat/completions", _stall, methods=["POST"]),
            Route("/trickle/v1/chat/completions", _trickle, methods=["POST"]),
            Route("/big/v1/chat/completions", _big, methods=["POST"]),
            Route("/small/v1/chat/completions", _small, methods=["POST"]),
        ]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="error", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hostile-llm", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "hostile server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    with hostile_server() as url:
        yield url


CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
# (route, drained to the end?, what the record's error holds)
CASES = [
    pytest.param("small", True, "Rate limit reached (hostile)", id="small-body-drained"),
    pytest.param("stall", False, CLOSED_EARLY, id="stalled-body-given-up"),
    pytest.param("trickle", False, CLOSED_EARLY, id="trickling-body-given-up"),
    pytest.param("big", False, CLOSED_EARLY, id="large-body-not-drained"),
]
MAX_CLOSE_S = 0.3  # the drain budget is 50 ms (plus one read's timeout); without a bound a stall costs 3 s


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
@pytest.mark.parametrize(("route", "complete", "phrase"), CASES)
def test_close_of_an_unread_error_is_bounded(
    route: str, complete: bool, phrase: str, lib: ModuleType, monitor: Monitor, hostile: str
) -> None:
    with lib.Client(transport=monitor.transport()) as client:
        request = client.build_request("POST", f"{hostile}/{route}/v1/chat/completions", json=CHAT)
        response = client.send(request, stream=True)
        started = time.perf_counter()
        response.close()
        elapsed = time.perf_counter() - started
        assert response.is_closed and elapsed < MAX_CLOSE_S, elapsed
    row = only_record(monitor)
    assert row["status_code"] == response.status_code and phrase in row["error"]
    assert (CLOSED_EARLY not in row["error"]) is complete


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
@pytest.mark.parametrize(("route", "complete", "phrase"), CASES)
def test_async_close_of_an_unread_error_is_bounded(
    route: str, complete: bool, phrase: str, lib: ModuleType, monitor: Monitor, hostile: str
) -> None:
    async def main() -> tuple[float, int]:
        async with lib.AsyncClient(transport=monitor.async_transport()) as client:
            request = client.build_request("POST", f"{hostile}/{route}/v1/chat/completions", json=CHAT)
            response = await client.send(request, stream=True)
            started = time.perf_counter()
            await response.aclose()
            return time.perf_counter() - started, response.status_code

    elapsed, status = asyncio.run(main())
    assert elapsed < MAX_CLOSE_S, elapsed
    row = only_record(monitor)
    assert row["status_code"] == status and phrase in row["error"]
    assert (CLOSED_EARLY not in row["error"]) is complete


def test_drained_bytes_never_reach_the_caller(monitor: Monitor, hostile: str) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        response = client.send(
            client.build_request("POST", f"{hostile}/small/v1/chat/completions", json=CHAT), stream=True
        )
        response.close()
        with pytest.raises(httpx.StreamClosed):  # exactly what httpx does without the monitor
            response.read()
        # A response the caller reads itself is untouched: the same bytes, recorded once.
        again = client.post(f"{hostile}/small/v1/chat/completions", json=CHAT)
        assert again.content == ERROR_JSON
    rows = records(monitor)
    assert len(rows) == 2 and all("Rate limit reached (hostile)" in r["error"] for r in rows)
