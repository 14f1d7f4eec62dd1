"""The real ``openai`` and ``anthropic`` SDKs through the proxy to the bundled fake LLM server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.proxy.running import config, proxy, recorded

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def second_fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def test_openai_sdk_through_the_proxy(store_target: str, fake_llm: FakeLLMServer) -> None:
    fake_llm.reset()
    monitor = Monitor(store_target, flush_interval=0.05)
    try:
        with proxy(monitor, config(fake_llm.base_url)) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="sk-proxy-test-9876", max_retries=0)
            direct = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-x", max_retries=0)
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            same = direct.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert reply.choices[0].message.content == same.choices[0].message.content == "Hello from the fake LLM."
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "Hello from the fake LLM."
            vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
            assert len(vectors.data) == 2
        rows = recorded(monitor, 3)
        assert [r["operation"] for r in rows] == ["chat", "chat", "embeddings"]
        chat, streamed, embed = rows
        port = fake_llm.base_url.rsplit(":", 1)[1]
        assert chat["provider"] == f"127.0.0.1:{port}" and chat["endpoint"] == "/v1/chat/completions"
        assert (chat["model"], chat["input_tokens"], chat["output_tokens"], chat["streamed"]) == (
            "gpt-4o-mini",
            11,
            5,
            False,
        )
        assert chat["cost_usd"] == pytest.approx(9 * 0.15e-6 + 2 * 0.075e-6 + 5 * 0.6e-6)
        assert (streamed["input_tokens"], streamed["output_tokens"], streamed["streamed"]) == (11, 5, True)
        assert streamed["ttft_ms"] is not None and streamed["request_model"] == "gpt-4o-mini"
        assert embed["input_tokens"] == 12 and embed["ok"]
        for row in rows:
            assert row["tags"] == {"client": "127.0.0.1"}
            assert row["inbound_method"] == "POST" and row["inbound_request_id"] == row["trace_id"]
        assert len({row["inbound_request_id"] for row in rows}) == 3
        # the client's own key went upstream unchanged (the proxy holds no provider keys)
        seen = [r for r in fake_llm.requests_seen if r["headers"].get("authorization") == "Bearer sk-proxy-test-9876"]
        assert len(seen) == 3
    finally:
        monitor.close()


def test_anthropic_sdk_through_a_route(monitor: Monitor, fake_llm: FakeLLMServer, second_fake: FakeLLMServer) -> None:
    fake_llm.reset()
    cfg = config(fake_llm.base_url, routes={"/anthropic": second_fake.base_url})
    with proxy(monitor, cfg) as url:
        client = anthropic.Anthropic(base_url=url + "/anthropic", api_key="sk-ant-test", max_retries=0)
        message = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=MESSAGES)
        assert message.content[0].text == "Hello from the fake LLM."  # type: ignore[union-attr]
        usage = message.usage
        expected_input = usage.input_tokens + (usage.cache_read_input_tokens or 0)
        with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=50, messages=MESSAGES) as stream:
            assert "".join(stream.text_stream) == "Hello from the fake LLM."
        other = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0)
        other.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [r["path"] for r in second_fake.requests_seen] == ["/v1/messages", "/v1/messages"]
    assert [r["path"] for r in fake_llm.requests_seen[-1:]] == ["/v1/chat/completions"]
    rows = recorded(monitor, 3)
    second_port = second_fake.base_url.rsplit(":", 1)[1]
    assert [(r["provider"], r["operation"], r["streamed"]) for r in rows[:2]] == [
        (f"127.0.0.1:{second_port}", "chat", False),
        (f"127.0.0.1:{second_port}", "chat", True),
    ]
    for row in rows[:2]:
        assert (row["model"], row["input_tokens"], row["output_tokens"]) == (
            "claude-3-5-haiku-latest",
            expected_input,
            5,
        )
        assert row["endpoint"] == "/v1/messages"
    assert rows[2]["provider"] == f"127.0.0.1:{fake_llm.base_url.rsplit(':', 1)[1]}"


def test_fifty_concurrent_streams_all_recorded(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main(url: str) -> list[str]:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0) as client:

            async def one(i: int) -> str:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"hello {i}"}],
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={"x-fake-chunks": str(1 + i % 7), "x-fake-chunk-delay": "0.01"},
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            return await asyncio.gather(*(one(i) for i in range(50)))

    with proxy(monitor, config(fake_llm.base_url)) as url:
        texts = asyncio.run(main(url))
    assert all(texts)
    rows = recorded(monitor, 50)
    assert len(rows) == 50
    assert all(r["ok"] and r["streamed"] and r["input_tokens"] == 11 for r in rows)
    assert sorted(r["output_tokens"] for r in rows) == sorted(1 + i % 7 for i in range(50))
    assert len({r["inbound_request_id"] for r in rows}) == 50


def test_sdk_sees_the_upstream_error_unchanged(monitor: Monitor, fake_llm: FakeLLMServer, tmp_path: Path) -> None:
    with proxy(monitor, config(fake_llm.base_url)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-status": "429"}
            )
    assert caught.value.status_code == 429 and caught.value.response.headers["retry-after"] == "0"
    row = recorded(monitor)[0]
    assert row["status_code"] == 429 and row["ok"] is False


def test_sdk_retries_through_the_proxy_join_their_call(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # each retry is a new inbound request (a new context): the proxy carries the client's failed attempt over
    failing = {"x-fake-status": "429", "x-fake-fail-times": "2", "x-fake-key": "proxy-retries"}
    with proxy(monitor, config(fake_llm.base_url)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=2)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=failing)
        assert reply.choices[0].message.content == "Hello from the fake LLM."
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # a new call after the success
        other = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0, default_headers={"User-Agent": "b"})
        other.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    rows = recorded(monitor, 5)
    assert [(r["attempt"], r["status_code"]) for r in rows] == [(1, 429), (2, 429), (3, 200), (1, 200), (1, 200)]
    assert len({r["call_id"] for r in rows[:3]}) == 1
    assert len({r["call_id"] for r in rows}) == 3
    assert len({r["inbound_request_id"] for r in rows}) == 5
