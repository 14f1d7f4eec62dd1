"""How a response ended and what it was: complete streams closed before their last event, ``streamed`` taken
from the response, Google's ``models/`` prefix. Real SDKs against a scripted uvicorn server on 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.capture.scripted_server import Reply, ScriptedApp, json_reply, sse_reply
from tests.conftest import only_record, records
from tests.httplibs import libs_for_anthropic

PAUSE = 0.5  # before the last event: the caller has closed by then
MESSAGES: Any = [{"role": "user", "content": "hi"}]


def anthropic_events(with_stop: bool = True) -> list[Any]:
    events: list[Any] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 11, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        PAUSE,  # a caller stopping at the text has not read what follows
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}},
        PAUSE,
    ]
    if with_stop:
        events.append({"type": "message_stop"})
    return events


def anthropic_client(monitor: Monitor, base_url: str) -> anthropic.Anthropic:
    http = libs_for_anthropic()[0].Client(transport=monitor.transport())
    return anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test", http_client=http, max_retries=0)


@pytest.mark.parametrize("break_after", ["message_delta", "content_block_delta"])
def test_anthropic_stream_closed_after_message_delta_is_complete(
    break_after: str, app: ScriptedApp, base_url: str, monitor: Monitor
) -> None:
    """litellm's way: iterate, stop at message_delta (stop reason + output usage), close; message_stop unread."""
    app.reply = sse_reply(anthropic_events(), named=True)
    client = anthropic_client(monitor, base_url)
    stream = client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, stream=True)
    seen = []
    for event in stream:
        seen.append(event.type)
        if event.type == break_after:
            break
    stream.close()
    assert "message_stop" not in seen
    row = only_record(monitor)
    assert row["streamed"] and row["input_tokens"] == 11
    if break_after == "message_delta":
        assert (row["finish_reason"], row["output_tokens"]) == ("end_turn", 6)
        assert row["error"] is None and row["ok"]
    else:  # closed mid-answer: that is still noted
        assert row["finish_reason"] is None and row["output_tokens"] == 1  # message_start's, not the final count
        assert "closed by the caller" in row["error"]


def test_anthropic_stream_ending_after_message_delta_is_not_truncated(
    app: ScriptedApp, base_url: str, monitor: Monitor
) -> None:
    app.reply = sse_reply([e for e in anthropic_events(with_stop=False) if e != PAUSE])
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(base_url + "/v1/messages", json={"model": "claude-haiku-4-5", "stream": True}).read()
    row = only_record(monitor)
    assert row["error"] is None and row["error_type"] is None and row["output_tokens"] == 6


def chat_chunk(**fields: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", **fields}


def openai_chat_events() -> list[Any]:
    return [
        chat_chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]),
        chat_chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        PAUSE,
        chat_chunk(choices=[], usage={"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}),
        PAUSE,
    ]


@pytest.mark.parametrize("break_on_usage", [True, False], ids=["after-usage", "after-finish-reason"])
def test_openai_chat_stream_closed_before_done(
    break_on_usage: bool, app: ScriptedApp, base_url: str, monitor: Monitor
) -> None:
    """finish_reason and the usage chunk complete a chat stream; [DONE] need not be read."""
    app.reply = sse_reply(openai_chat_events(), done=True)
    http = httpx.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.usage is not None if break_on_usage else chunk.choices and chunk.choices[0].finish_reason:
            break
    stream.close()
    row = only_record(monitor)
    assert row["finish_reason"] == "stop"
    if break_on_usage:
        assert (row["input_tokens"], row["output_tokens"], row["error"]) == (8, 2, None)
    else:  # the usage chunk was still to come: not complete
        assert row["output_tokens"] is None and "closed by the caller" in row["error"]


def test_openai_responses_stream_closed_after_response_completed(
    app: ScriptedApp, base_url: str, monitor: Monitor
) -> None:
    response = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-5",
        "status": "completed",
        "output": [],
        "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
    }
    app.reply = sse_reply(
        [
            {"type": "response.created", "sequence_number": 0, "response": {**response, "status": "in_progress"}},
            {"type": "response.completed", "sequence_number": 1, "response": response},
            PAUSE,
            b": keep-alive\n\n",
        ],
        named=True,
    )
    http = httpx.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)
    stream = client.responses.create(model="gpt-5", input="hi", stream=True)
    for event in stream:
        if event.type == "response.completed":
            break
    stream.close()
    row = only_record(monitor)
    assert (row["input_tokens"], row["output_tokens"], row["finish_reason"]) == (5, 3, "completed")
    assert row["error"] is None


# ---- streamed reflects the response ------------------------------------------------------------------------------


def test_streamed_is_what_the_response_was(app: ScriptedApp, base_url: str, monitor: Monitor) -> None:
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    replies = [
        json_reply(error, status=500),  # a JSON 500 to a "stream": true request: not streamed
        json_reply({"model": "gpt-4o-mini", "choices": [{"finish_reason": "stop"}]}),  # a server ignoring stream
        sse_reply([e for e in openai_chat_events() if e != PAUSE], done=True),
    ]
    with httpx.Client(transport=monitor.transport()) as client:
        for reply in replies:
            app.reply = reply
            client.post(base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "stream": True}).read()
        app.reply = json_reply({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}, status=400)
        client.post(base_url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent", json={}).read()
    json_500, json_200, sse, gemini_400 = records(monitor)
    assert json_500["streamed"] is False and json_500["status_code"] == 500 and "overloaded" in json_500["error"]
    assert json_200["streamed"] is False
    assert sse["streamed"] is True and sse["error"] is None
    assert gemini_400["streamed"] is False


def test_without_a_response_streamed_is_what_was_asked(monitor: Monitor) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with httpx.Client(transport=monitor.transport()) as client:
        for stream in (True, False):
            with pytest.raises(httpx.ConnectError):
                client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m", "stream": stream})
    asked_stream, asked_plain = records(monitor)
    assert asked_stream["streamed"] is True and asked_plain["streamed"] is False


# ---- Google's models/ prefix -------------------------------------------------------------------------------------


def test_gemini_embedding_models_lose_their_prefix(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    base = fake_llm.base_url + "/v1beta/models/text-embedding-004"
    content = {"parts": [{"text": "hi"}]}
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(base + ":embedContent", json={"model": "models/text-embedding-004", "content": content})
        batch = {"requests": [{"model": "models/text-embedding-004", "content": content}] * 2}
        client.post(base + ":batchEmbedContents", json=batch)
    single, batched = records(monitor)
    for row in (single, batched):
        assert row["operation"] == "embeddings" and row["ok"], row["error"]
        assert row["request_model"] == "text-embedding-004" and row["model"] == "text-embedding-004"


def test_gemini_response_model_loses_its_prefix(app: ScriptedApp, base_url: str, monitor: Monitor) -> None:
    app.reply = json_reply({"candidates": [{"finishReason": "STOP"}], "modelVersion": "models/gemini-2.5-flash"})
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(base_url + "/v1beta/models/gemini-2.5-flash:generateContent", json={})
    row = only_record(monitor)
    assert row["response_model"] == "gemini-2.5-flash"


def test_an_endless_model_name_is_bounded(app: ScriptedApp, base_url: str, monitor: Monitor) -> None:
    app.reply = Reply(json_reply({"model": "m" * 100_000, "choices": []}).chunks)
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini"})
    row = only_record(monitor)
    assert row["response_model"] == "m" * 256
