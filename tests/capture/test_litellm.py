"""litellm's async path, whatever transport it uses: one record per HTTP attempt.

litellm 1.110 sends ``acompletion(model="openai/...")`` through the OpenAI SDK on an ``httpx.AsyncClient`` whose
transport is ``LiteLLMAiohttpTransport`` (httpx requests sent on an aiohttp session). So ``instrument_httpx()``
records it at the httpx layer, ``instrument_aiohttp()`` at the aiohttp layer, and ``instrument()`` (both) once.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of litellm's price map from the network

import litellm
from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import records

pytestmark = pytest.mark.sdk
litellm.suppress_debug_info = True

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
MODES = ("instrument", "instrument_aiohttp", "instrument_httpx")


@pytest.fixture(autouse=True)
def fresh_litellm_clients() -> Iterator[None]:
    """litellm caches its HTTP clients across calls: each test makes its own, after instrumenting."""
    litellm.in_memory_llm_clients_cache.flush_cache()
    yield
    litellm.in_memory_llm_clients_cache.flush_cache()


@pytest.fixture(params=MODES)
def instrumented(request: pytest.FixtureRequest, monitor: Monitor) -> Iterator[Monitor]:
    getattr(monitor, request.param)()
    try:
        yield monitor
    finally:
        monitor.uninstrument()


async def acompletion(server: FakeLLMServer, **kw: Any) -> Any:
    return await litellm.acompletion(
        model="openai/gpt-4o-mini", api_base=server.base_url + "/v1", api_key="sk-test-key", messages=MESSAGES, **kw
    )


def test_litellm_async_goes_through_aiohttp(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    """The premise: litellm's async httpx client sends on aiohttp (else the aiohttp-only mode would see nothing)."""
    seen: list[Any] = []
    original = LiteLLMAiohttpTransport.handle_async_request

    async def spy(self: Any, request: Any) -> Any:
        seen.append(request.url.path)
        return await original(self, request)

    LiteLLMAiohttpTransport.handle_async_request = spy  # type: ignore[method-assign]
    try:
        asyncio.run(acompletion(fake_llm))
    finally:
        LiteLLMAiohttpTransport.handle_async_request = original  # type: ignore[method-assign]
    assert seen == ["/v1/chat/completions"]


def test_acompletion_recorded_once(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> tuple[Any, str]:
        reply = await acompletion(fake_llm)
        parts = [c.choices[0].delta.content or "" async for c in await acompletion(fake_llm, stream=True)]
        return reply, "".join(parts)

    reply, streamed_text = asyncio.run(main())
    assert reply.choices[0].message.content == streamed_text == "Hello from the fake LLM."
    body, streamed = records(instrumented)
    assert body["model"] == "gpt-4o-mini" and body["ok"] is True
    assert (body["input_tokens"], body["output_tokens"]) == (11, 5) == (reply.usage.prompt_tokens, 5)
    assert body["streamed"] is False
    assert streamed["streamed"] is True and streamed["ok"] is True and streamed["error"] is None
    assert streamed["ttft_ms"] is not None


def test_num_retries_one_record_per_attempt(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    failing = {"x-fake-status": "503", "x-fake-fail-times": "2", "x-fake-key": uuid.uuid4().hex}
    reply = asyncio.run(acompletion(fake_llm, num_retries=2, extra_headers=failing))
    assert reply.choices[0].message.content
    rows = records(instrumented)
    statuses = [r["status_code"] for r in rows]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {503}
    # Each HTTP attempt once: the fake saw exactly as many requests as were recorded.
    key = failing["x-fake-key"]
    sent = [r for r in fake_llm.requests_seen if r["headers"].get("x-fake-key") == key]
    assert len(rows) == len(sent) >= 3
