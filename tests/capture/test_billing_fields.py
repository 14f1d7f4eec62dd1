"""What the bill depends on, recorded from the real SDKs against the fake server: the service tier (the
response's, else the request's), Anthropic's cache writes by TTL, and the provider's response id; streamed and not.
The recorded cost is priced with them."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.pricing import Pricer
from llm_monitor_mw.record import CallRecord
from tests.conftest import only_record, records
from tests.httplibs import libs_for_anthropic, libs_for_openai

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def detail(monitor: Monitor, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored row itself (every column), read from the database file."""
    call_id = (row or only_record(monitor))["id"]
    with closing(sqlite3.connect(monitor.path)) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
    assert found is not None
    stored = dict(found)
    stored["streamed"] = bool(stored["streamed"])
    return stored


def openai_client(monitor: Monitor, server: FakeLLMServer) -> openai.OpenAI:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test-secret-key", http_client=http)


def anthropic_client(monitor: Monitor, server: FakeLLMServer) -> anthropic.Anthropic:
    http = libs_for_anthropic()[0].Client(transport=monitor.transport())
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-api03-secret", http_client=http)


def as_record(row: dict[str, Any]) -> CallRecord:
    """The stored fields pricing reads."""
    names = [
        *("started_at", "provider", "operation", "endpoint", "request_model", "response_model", "service_tier"),
        *("input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens"),
        *("cache_write_5m_tokens", "cache_write_1h_tokens"),
    ]
    return CallRecord(**{n: row[n] for n in names})


@pytest.mark.parametrize("tier", ["flex", "priority", None])
def test_openai_chat_tier_and_id(tier: str | None, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    extra = {"service_tier": tier} if tier else {}
    completion = openai_client(monitor, fake_llm).chat.completions.create(model="gpt-5", messages=MESSAGES, **extra)
    row = detail(monitor)
    assert completion.service_tier == (tier or "default")
    assert row["service_tier"] == completion.service_tier
    assert row["response_id"] == completion.id and completion.id.startswith("chatcmpl-")
    assert row["cost_usd"] == pytest.approx(Pricer().price(as_record(row)), rel=1e-12)


def test_openai_tier_prices_the_call(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    for tier in ("flex", "auto", "priority"):
        client.chat.completions.create(model="gpt-5", messages=MESSAGES, service_tier=tier)  # type: ignore[arg-type]
    flex, default, priority = (r["cost_usd"] for r in records(monitor))
    assert flex < default < priority


def test_openai_chat_stream_tier_and_id(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    stream = openai_client(monitor, fake_llm).chat.completions.create(
        model="gpt-5", messages=MESSAGES, stream=True, stream_options={"include_usage": True}, service_tier="flex"
    )
    chunks = list(stream)
    row = detail(monitor)
    assert row["streamed"]
    assert row["service_tier"] == "flex" == chunks[-1].service_tier
    assert row["response_id"] == chunks[0].id


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_openai_responses_tier_and_id(stream: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    if stream:
        events = list(client.responses.create(model="gpt-5", input="hi", stream=True, service_tier="priority"))
        response_id = events[-1].response.id  # type: ignore[union-attr]
    else:
        response_id = client.responses.create(model="gpt-5", input="hi", service_tier="priority").id
    row = detail(monitor)
    assert row["streamed"] is stream
    assert row["service_tier"] == "priority"
    assert row["response_id"] == response_id and response_id.startswith("resp_")


def test_the_requested_tier_when_the_response_omits_it(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # legacy completions answer without a service_tier: the request's is what was asked for
    client = openai_client(monitor, fake_llm)
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="hi", extra_body={"service_tier": "flex"}
    )
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    asked, plain = (detail(monitor, r) for r in records(monitor))
    assert asked["service_tier"] == "flex" and plain["service_tier"] is None
    assert asked["response_id"] == completion.id


def test_anthropic_cache_split_tier_and_id(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = anthropic_client(monitor, fake_llm)
    headers = {"x-fake-cache-5m": "300", "x-fake-cache-1h": "700"}
    message = client.messages.create(model="claude-opus-4-1", max_tokens=64, messages=MESSAGES, extra_headers=headers)
    row = detail(monitor)
    assert message.usage.cache_creation is not None
    assert (row["cache_write_5m_tokens"], row["cache_write_1h_tokens"]) == (300, 700)
    assert row["cache_creation_tokens"] == message.usage.cache_creation_input_tokens == 1000
    assert row["service_tier"] == message.usage.service_tier == "standard"
    assert row["response_id"] == message.id and message.id.startswith("msg_")
    assert row["cost_usd"] == pytest.approx(Pricer().price(as_record(row)), rel=1e-12)


def test_anthropic_stream_cache_split(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = anthropic_client(monitor, fake_llm)
    headers = {"x-fake-cache-1h": "2000"}
    with client.messages.stream(
        model="claude-opus-4-1", max_tokens=64, messages=MESSAGES, extra_headers=headers
    ) as stream:
        final = stream.get_final_message()
    row = detail(monitor)
    assert row["streamed"]
    assert (row["cache_write_5m_tokens"], row["cache_write_1h_tokens"], row["cache_creation_tokens"]) == (0, 2000, 2000)
    assert row["service_tier"] == "standard"
    assert row["response_id"] == final.id


def test_one_hour_writes_cost_more(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = anthropic_client(monitor, fake_llm)
    for ttl in ("5m", "1h"):
        client.messages.create(
            model="claude-opus-4-1", max_tokens=64, messages=MESSAGES, extra_headers={f"x-fake-cache-{ttl}": "10000"}
        )
    five, hour = (r["cost_usd"] for r in records(monitor))
    assert hour - five == pytest.approx(10_000 * 15 * (2 - 1.25) / 1e6)


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_gemini_response_id(stream: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    options = types.HttpOptions(
        base_url=fake_llm.base_url, api_version="v1beta", httpx_client=httpx.Client(transport=monitor.transport())
    )
    client = genai.Client(api_key="gm-test", http_options=options)
    if stream:
        response = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))[-1]
    else:
        response = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    row = detail(monitor)
    assert response.response_id and row["response_id"] == response.response_id
