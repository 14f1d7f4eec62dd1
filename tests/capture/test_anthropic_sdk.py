"""The real `anthropic` SDK (sync and async, streaming and not) through the transport."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import anthropic
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records
from tests.httplibs import lib_id, libs_for_anthropic

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

LIBS = libs_for_anthropic()
MODEL = "claude-sonnet-4-5"
MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def sync_client(lib: ModuleType, monitor: Monitor, server: FakeLLMServer, **kw: Any) -> anthropic.Anthropic:
    http = lib.Client(transport=monitor.transport())
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-api03-secret", http_client=http, **kw)


def async_client(lib: ModuleType, monitor: Monitor, server: FakeLLMServer, **kw: Any) -> anthropic.AsyncAnthropic:
    http = lib.AsyncClient(transport=monitor.async_transport())
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-api03-secret", http_client=http, **kw)


def assert_usage(row: dict[str, Any], usage: Any) -> None:
    """OTel semantics: input includes cache reads and writes; cached = cache reads."""
    read = usage.cache_read_input_tokens or 0
    created = usage.cache_creation_input_tokens or 0
    assert row["input_tokens"] == usage.input_tokens + read + created
    assert row["cached_tokens"] == read and row["cache_creation_tokens"] == created
    assert row["output_tokens"] == usage.output_tokens
    assert row["total_tokens"] == row["input_tokens"] + row["output_tokens"]


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_messages_sync(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    message = sync_client(lib, monitor, fake_llm).messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    row = only_record(monitor)
    assert row["provider"].startswith("127.0.0.1:")
    assert (row["operation"], row["endpoint"], row["model"], row["streamed"]) == ("chat", "/v1/messages", MODEL, False)
    assert row["ok"] and row["error"] is None
    assert_usage(row, message.usage)
    assert row["finish_reason"] == message.stop_reason
    assert row["request_id"] and row["ratelimit_remaining_requests"] is not None
    assert row["cost_usd"] is not None and row["cost_usd"] > 0


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_messages_stream_sync(lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(lib, monitor, fake_llm)
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake LLM."
    row = only_record(monitor)
    assert row["streamed"] and row["ok"] and row["error"] is None
    assert_usage(row, final.usage)
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["ttlt_ms"] <= row["duration_ms"]


def test_messages_async_stream_and_plain(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> None:
        async with async_client(LIBS[0], monitor, fake_llm) as client:
            await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
            stream = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
            async for _event in stream:
                pass

    asyncio.run(main())
    plain, streamed = records(monitor)
    assert not plain["streamed"] and streamed["streamed"]
    assert plain["output_tokens"] == streamed["output_tokens"] == 5
    assert streamed["ok"] and streamed["error"] is None


def test_overloaded_retries_then_success(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm, max_retries=2)
    headers = {"x-fake-status": "529", "x-fake-fail-times": "2", "x-fake-key": "anthropic-overloaded"}
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers)
    rows = records(monitor)
    assert [(r["attempt"], r["status_code"]) for r in rows] == [(1, 529), (2, 529), (3, 200)]
    assert len({r["call_id"] for r in rows}) == 1
    assert rows[0]["error_type"] == "overloaded_error"


def test_in_stream_error_event(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers={"x-fake-behavior": "error-event"}
        ) as stream,
    ):
        for _ in stream:
            pass
    row = only_record(monitor)
    assert row["status_code"] == 200 and row["ok"] is False
    assert row["error_type"] == "overloaded_error" and "Overloaded" in row["error"]
