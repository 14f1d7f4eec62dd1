"""The real `openai` SDK (sync and async, over httpx and httpx2) through the transport against the fake server."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import openai
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records
from tests.httplibs import lib_id, libs_for_openai

pytestmark = pytest.mark.sdk

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
LIBS = libs_for_openai()


def sync_client(lib: ModuleType, monitor: Monitor, server: FakeLLMServer, **kw: Any) -> openai.OpenAI:
    http = lib.Client(transport=monitor.transport())
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test-secret-key", http_client=http, **kw)


def async_client(lib: ModuleType, monitor: Monitor, server: FakeLLMServer, **kw: Any) -> openai.AsyncOpenAI:
    http = lib.AsyncClient(transport=monitor.async_transport())
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="sk-test-secret-key", http_client=http, **kw)


def assert_chat_usage(row: dict[str, Any]) -> None:
    # The fake server: prompt = 10 + messages, completion = 5 chunks, 2 cached, 1 reasoning.
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (11, 5, 16)
    assert row["cached_tokens"] == 2
    assert row["reasoning_tokens"] == 1


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_chat_sync(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(lib, monitor, fake_llm)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from the fake LLM."
    row = only_record(monitor)
    assert row["provider"] == f"127.0.0.1:{fake_llm.base_url.rsplit(':', 1)[1]}"
    assert (row["operation"], row["endpoint"], row["method"]) == ("chat", "/v1/chat/completions", "POST")
    assert (row["model"], row["request_model"], row["response_model"]) == ("gpt-4o-mini",) * 3
    assert row["status_code"] == 200 and row["ok"] is True and row["error"] is None
    assert row["streamed"] is False and row["ttft_ms"] is None
    assert_chat_usage(row)
    assert row["finish_reason"] == "stop"
    assert row["request_id"].startswith("req_")
    assert row["ratelimit_remaining_requests"] is not None
    assert row["attempt"] == 1 and row["call_id"]
    assert row["duration_ms"] > 0
    # gpt-4o-mini at genai-prices' rates: 9 uncached input, 2 cached input, 5 output tokens.
    assert row["cost_usd"] == pytest.approx(9 * 0.15e-6 + 2 * 0.075e-6 + 5 * 0.6e-6)


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_chat_async(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> str | None:
        async with async_client(lib, monitor, fake_llm) as client:
            reply = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            return reply.choices[0].message.content

    assert asyncio.run(main()) == "Hello from the fake LLM."
    row = only_record(monitor)
    assert row["ok"] and row["streamed"] is False
    assert_chat_usage(row)


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_chat_stream_sync_with_usage(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(lib, monitor, fake_llm)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-chunk-delay": "0.02"},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from the fake LLM."
    row = only_record(monitor)
    assert row["streamed"] is True and row["ok"] is True and row["error"] is None
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (11, 5, 16)
    assert row["finish_reason"] == "stop"
    # The role chunk carries no content; the first content chunk comes >= one delay later.
    assert 15 <= row["ttft_ms"] <= row["ttlt_ms"] <= row["duration_ms"]
    assert row["output_tokens_per_s"] > 0


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_chat_stream_async(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> str:
        async with async_client(lib, monitor, fake_llm) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "Hello from the fake LLM."
    row = only_record(monitor)
    assert row["streamed"] and row["ok"] and row["error"] is None
    assert row["total_tokens"] == 16 and row["ttft_ms"] is not None


def test_chat_stream_without_usage_records_unknown_tokens(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    row = only_record(monitor)
    assert row["ok"] and row["error"] is None
    assert row["input_tokens"] is None and row["output_tokens"] is None and row["total_tokens"] is None
    assert row["cost_usd"] is None  # unknown tokens: unknown cost, not zero


def test_stream_usage_option_adds_include_usage(tmp_path: Any, fake_llm: FakeLLMServer) -> None:
    with Monitor(tmp_path / "m.db", stream_usage=True) as monitor:
        client = sync_client(LIBS[0], monitor, fake_llm)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 16
        row = only_record(monitor)
        assert row["total_tokens"] == 16 and row["cost_usd"] is not None
    sent = fake_llm.requests_seen[-1]
    assert sent["body"].startswith(b'{"stream_options":{"include_usage":true},')
    assert int(sent["headers"]["content-length"]) == len(sent["body"])


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_embeddings(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(lib, monitor, fake_llm)
    result = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(result.data) == 2
    row = only_record(monitor)
    assert row["operation"] == "embeddings" and row["model"] == "text-embedding-3-small"
    assert row["input_tokens"] == result.usage.prompt_tokens and row["output_tokens"] == 0
    assert row["cost_usd"] == pytest.approx(result.usage.prompt_tokens * 0.02e-6)


def test_legacy_completions(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm)
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    row = only_record(monitor)
    assert row["operation"] == "text_completion"
    assert row["input_tokens"] == result.usage.prompt_tokens
    assert row["output_tokens"] == result.usage.completion_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_api(stream: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm)
    if stream:
        events = list(client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True))
        usage = events[-1].response.usage  # type: ignore[union-attr]
    else:
        usage = client.responses.create(model="gpt-4o-mini", input="Say hello").usage
    assert usage is not None
    row = only_record(monitor)
    assert (row["operation"], row["endpoint"], row["streamed"]) == ("chat", "/v1/responses", stream)
    assert row["ok"] and row["error"] is None, row["error"]
    assert row["input_tokens"] == usage.input_tokens and row["output_tokens"] == usage.output_tokens
    assert row["cached_tokens"] == usage.input_tokens_details.cached_tokens
    assert row["reasoning_tokens"] == usage.output_tokens_details.reasoning_tokens
    assert row["total_tokens"] == usage.input_tokens + usage.output_tokens
    if stream:
        assert row["ttft_ms"] is not None


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_sdk_retries_are_linked_attempts(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(lib, monitor, fake_llm, max_retries=3)
    headers = {"x-fake-status": "429", "x-fake-fail-times": "2", "x-fake-key": f"retry-{lib_id(lib)}"}
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    rows = records(monitor)
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    assert len({r["call_id"] for r in rows}) == 1
    assert [r["status_code"] for r in rows] == [429, 429, 200]
    assert [r["ok"] for r in rows] == [False, False, True]
    assert rows[0]["error_type"] and "rate limit" in rows[0]["error"].lower()
    assert rows[0]["retry_after_s"] is not None and rows[0]["retry_after_s"] < 1  # the fake says retry now
    # A new call after that starts a new call id.
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert records(monitor)[-1]["call_id"] != rows[0]["call_id"]


def test_async_retries_are_linked_attempts(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> None:
        async with async_client(LIBS[0], monitor, fake_llm, max_retries=2) as client:
            headers = {"x-fake-status": "503", "x-fake-fail-times": "1", "x-fake-key": "async-retry"}
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)

    asyncio.run(main())
    rows = records(monitor)
    assert [(r["attempt"], r["status_code"]) for r in rows] == [(1, 503), (2, 200)]
    assert rows[0]["call_id"] == rows[1]["call_id"]


def test_http_error_is_recorded_and_raised_unchanged(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-status": "400"})
    row = only_record(monitor)
    assert row["status_code"] == 400 and row["ok"] is False
    assert row["error_type"] == info.value.body["type"]  # type: ignore[index]
    assert row["error"] == info.value.body["message"]  # type: ignore[index]


def test_connection_error_is_recorded_and_raised(monitor: Monitor) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = LIBS[0].Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", http_client=http, max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    rows = records(monitor)
    assert [r["attempt"] for r in rows] == [1, 2]
    assert all(r["status_code"] is None and r["error_type"] == "ConnectError" and not r["ok"] for r in rows)
