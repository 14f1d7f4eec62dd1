"""Tool calls: how many the model asked for, their names and (with content capture) their arguments.

The real ``openai`` SDK (chat completions and Responses, streamed and not) and the real ``anthropic`` SDK against
the bundled fake server; Gemini and Ollama through plain httpx with their real payload shapes; hostile and cut
streams from a scripted server over a real socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_monitor_mw import CallRecord, Monitor
from llm_monitor_mw.capture.pending import HEAD_BYTES, TAIL_BYTES
from llm_monitor_mw.capture.providers.tools import MAX_CALLS, MAX_NAME_CHARS
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.capture.scripted_server import Reply, ScriptedApp, json_reply, ndjson_reply, sse_reply
from tests.httplibs import libs_for_anthropic, libs_for_openai

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

USER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}
CHAT_TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
GEMINI_TOOLS: Any = [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER}]}]
ARGS = {"city": "Paris", "days": 1}  # what the fake server fills in from WEATHER
FORCE = {"x-fake-tool-calls": "3"}


class Captured:
    """A monitor whose records are kept as built (a listener), with content capture on."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.monitor = Monitor(path, flush_interval=0.05, capture_content=True, **options)
        self.items: list[CallRecord] = []
        self.monitor.add_listener(self.items.append)

    def records(self) -> list[CallRecord]:
        assert self.monitor.flush(timeout=10), "writer did not flush in time"
        assert self.monitor.stats()["failed"] == 0  # every record was stored, tool names included
        return list(self.items)

    def only(self) -> CallRecord:
        items = self.records()
        assert len(items) == 1, items
        return items[0]


@pytest.fixture
def cap(tmp_path: Path) -> Iterator[Captured]:
    captured = Captured(tmp_path / "calls.db")
    yield captured
    captured.monitor.close()


def oai(cap: Captured, server: FakeLLMServer) -> openai.OpenAI:
    http = libs_for_openai()[0].Client(transport=cap.monitor.transport())
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def claude(cap: Captured, server: FakeLLMServer) -> anthropic.Anthropic:
    http = libs_for_anthropic()[0].Client(transport=cap.monitor.transport())
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-test", http_client=http, max_retries=0)


def post(cap: Captured, url: str, body: Any, **kw: Any) -> httpx.Response:
    with httpx.Client(transport=cap.monitor.transport()) as client:
        response = client.post(url, json=body, **kw)
        response.read()
        return response


def arguments(record: CallRecord) -> list[dict[str, Any]]:
    assert record.tool_arguments is not None
    return json.loads(record.tool_arguments)


def assert_weather_calls(record: CallRecord, n: int = 1) -> None:
    assert record.error is None, record.error
    assert record.tool_call_count == n
    assert record.tool_names == ["get_weather"] * n
    assert [(a["name"], json.loads(a["arguments"])) for a in arguments(record)] == [("get_weather", ARGS)] * n


# ---- OpenAI chat completions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_openai_chat_tool_calls(stream: bool, cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = oai(cap, fake_llm)
    if stream:
        seen: dict[int, str] = {}
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=CHAT_TOOLS, stream=True):
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                if delta.function and delta.function.name:
                    seen[delta.index] = delta.function.name
        assert seen == {0: "get_weather"}
    else:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=CHAT_TOOLS)
        calls = reply.choices[0].message.tool_calls or []
        assert [json.loads(c.function.arguments) for c in calls] == [ARGS]  # type: ignore[union-attr]
    record = cap.only()
    assert record.finish_reason == "tool_calls" and record.streamed is stream
    assert_weather_calls(record)


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_openai_chat_parallel_tool_calls(stream: bool, cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = oai(cap, fake_llm)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=CHAT_TOOLS, stream=stream, extra_headers=FORCE
    )
    if stream:
        for _ in reply:  # type: ignore[union-attr]
            pass
    assert_weather_calls(cap.only(), 3)


def test_openai_chat_without_tools_is_a_known_zero(cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = oai(cap, fake_llm)
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
        pass
    # Tools offered, but the last turn is the tool's answer: the model replies in text.
    answered = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=answered, tools=CHAT_TOOLS)
    assert reply.choices[0].message.content == "Hello from the fake LLM."
    for record in cap.records():
        assert (record.tool_call_count, record.tool_names, record.tool_arguments) == (0, [], None)


def test_arguments_only_with_content_capture(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    with Monitor(tmp_path / "plain.db", flush_interval=0.05) as monitor:
        items: list[CallRecord] = []
        monitor.add_listener(items.append)
        http = httpx.Client(transport=monitor.transport())
        client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http)
        client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=CHAT_TOOLS)
        assert monitor.flush(timeout=10)
    (record,) = items
    assert (record.tool_call_count, record.tool_names, record.tool_arguments) == (1, ["get_weather"], None)


# ---- OpenAI Responses --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_openai_responses_function_calls(stream: bool, cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = oai(cap, fake_llm)
    if stream:
        with client.responses.stream(model="gpt-4.1-mini", input="Weather in Paris?", tools=RESPONSES_TOOLS) as events:
            for _ in events:
                pass
            output = events.get_final_response().output
    else:
        output = client.responses.create(model="gpt-4.1-mini", input="Weather in Paris?", tools=RESPONSES_TOOLS).output
    assert [(item.type, getattr(item, "name", None)) for item in output] == [("function_call", "get_weather")]
    record = cap.only()
    assert record.operation == "chat" and record.streamed is stream
    assert_weather_calls(record)


def test_openai_responses_stream_of_parallel_calls(cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = oai(cap, fake_llm)
    with client.responses.stream(
        model="gpt-4.1-mini", input="Weather?", tools=RESPONSES_TOOLS, extra_headers=FORCE
    ) as events:
        names = [e.item.name for e in events if e.type == "response.output_item.added"]  # type: ignore[union-attr]
    assert names == ["get_weather"] * 3
    assert_weather_calls(cap.only(), 3)


# ---- Anthropic ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["body", "create-stream", "messages.stream"])
def test_anthropic_tool_use_blocks(how: str, cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = claude(cap, fake_llm)
    kw: Any = {"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": USER, "tools": ANTHROPIC_TOOLS}
    if how == "body":
        message = client.messages.create(**kw)
    elif how == "create-stream":
        for _ in client.messages.create(**kw, stream=True):
            pass
    else:
        with client.messages.stream(**kw) as stream:
            message = stream.get_final_message()
    if how != "create-stream":
        assert [(b.type, getattr(b, "input", None)) for b in message.content] == [("tool_use", ARGS)]
    record = cap.only()
    assert record.finish_reason == "tool_use"
    assert_weather_calls(record)


def test_anthropic_parallel_tool_use_and_tool_results(cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = claude(cap, fake_llm)
    kw: Any = {"model": "claude-sonnet-4-5", "max_tokens": 256, "tools": ANTHROPIC_TOOLS}
    with client.messages.stream(messages=USER, extra_headers=FORCE, **kw) as stream:
        first = stream.get_final_message()
    results = [{"type": "tool_result", "tool_use_id": b.id, "content": "sunny"} for b in first.content]  # type: ignore[union-attr]
    history: Any = [*USER, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    final = client.messages.create(messages=history, **kw)
    assert final.stop_reason == "end_turn"
    parallel, answer = cap.records()
    assert_weather_calls(parallel, 3)
    assert (answer.tool_call_count, answer.tool_names) == (0, [])


# ---- Gemini and Ollama (plain httpx) ------------------------------------------------------------------------------

GEMINI_BODY: Any = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": GEMINI_TOOLS}


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent"])
def test_gemini_function_calls(method: str, cap: Captured, fake_llm: FakeLLMServer) -> None:
    response = post(cap, f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:{method}", GEMINI_BODY, headers=FORCE)
    assert response.status_code == 200
    record = cap.only()
    assert record.finish_reason == "STOP"
    assert_weather_calls(record, 3)


def test_gemini_function_response_turn_gets_text(cap: Captured, fake_llm: FakeLLMServer) -> None:
    answered = {
        **GEMINI_BODY,
        "contents": [
            *GEMINI_BODY["contents"],
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": ARGS}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}]},
        ],
    }
    data = post(cap, f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent", answered).json()
    assert data["candidates"][0]["content"]["parts"] == [{"text": "Hello from the fake LLM."}]
    assert cap.only().tool_call_count == 0


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_ollama_tool_calls(stream: bool, cap: Captured, fake_llm: FakeLLMServer) -> None:
    body = {"model": "llama3.2", "messages": USER, "tools": CHAT_TOOLS, "stream": stream}
    post(cap, f"{fake_llm.base_url}/api/chat", body)
    record = cap.only()
    assert record.streamed is stream and record.finish_reason == "stop"
    assert_weather_calls(record)


def test_unknown_where_there_is_no_answer(cap: Captured, fake_llm: FakeLLMServer) -> None:
    post(cap, f"{fake_llm.base_url}/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"})
    post(
        cap,
        f"{fake_llm.base_url}/api/chat",
        {"model": "m", "messages": USER, "tools": CHAT_TOOLS},
        headers={"x-fake-status": "429"},
    )
    post(
        cap,
        f"{fake_llm.base_url}/v1/chat/completions",
        {"model": "m", "messages": USER, "tools": CHAT_TOOLS},
        headers={"x-fake-behavior": "truncate"},
    )
    for record in cap.records():
        assert (record.tool_call_count, record.tool_names, record.tool_arguments) == (None, None, None), record


# ---- streams cut short ---------------------------------------------------------------------------------------------


def test_a_stream_closed_early_leaves_the_count_unknown(cap: Captured, fake_llm: FakeLLMServer) -> None:
    client = oai(cap, fake_llm)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        tools=CHAT_TOOLS,
        stream=True,
        extra_headers={**FORCE, "x-fake-chunk-delay": "0.05"},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            break  # the first call is named: close the stream there
    stream.close()
    record = cap.only()
    assert (record.tool_call_count, record.tool_names, record.tool_arguments) == (None, None, None)
    assert record.error is not None
    assert "before the end of the body" in record.error and "1 seen before it did" in record.error


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


BULK = max(HEAD_BYTES, TAIL_BYTES) + 64 * 1024  # each of two text runs outgrows a window: the middle is dropped


def text_run(make: Any) -> list[Any]:
    piece = "x" * 4000
    return [make(piece) for _ in range(BULK // len(piece))]


def chat_stream_with_dropped_middle(finish: str) -> Reply:
    """Text, a tool call, more text: the tool call's events fall in the part of the stream that is not kept."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    events = [
        *text_run(lambda t: chat_chunk({"content": t})),
        chat_chunk({"tool_calls": [call]}),
        *text_run(lambda t: chat_chunk({"content": t})),
        chat_chunk({}, finish),
        {**chat_chunk({}), "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]
    return sse_reply(events, done=True)


def scripted(cap: Captured, base_url: str, path: str, body: Any) -> CallRecord:
    cap.items.clear()
    with (
        httpx.Client(transport=cap.monitor.transport()) as client,
        client.stream("POST", base_url + path, json=body) as r,
    ):
        for _ in r.iter_raw():
            pass
    return cap.only()


def test_tool_calls_in_a_dropped_middle_are_unknown(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    app.reply = chat_stream_with_dropped_middle("tool_calls")
    record = scripted(
        cap, base_url, "/v1/chat/completions", {"model": "m", "messages": USER, "tools": CHAT_TOOLS, "stream": True}
    )
    assert record.finish_reason == "tool_calls" and record.output_tokens == 2  # the tail was parsed
    assert (record.tool_call_count, record.tool_names, record.tool_arguments) == (None, None, None)
    assert record.error is not None and "middle of the stream was not kept" in record.error
    assert record.error_type is None  # a note, not a failure


def test_a_dropped_middle_without_tools_offered_is_zero(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    app.reply = chat_stream_with_dropped_middle("stop")
    record = scripted(cap, base_url, "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True})
    assert (record.tool_call_count, record.tool_names) == (0, [])
    assert record.error is None


def anthropic_events(stop_reason: str, tool_in_middle: bool) -> list[Any]:
    def text(t: str) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}

    start = {
        "type": "message",
        "id": "msg",
        "role": "assistant",
        "model": "claude",
        "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    middle = []
    if tool_in_middle:
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        middle = [{"type": "content_block_start", "index": 1, "content_block": block}]
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *text_run(text),
        *middle,
        *text_run(text),
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]


def test_anthropic_end_turn_rules_out_a_dropped_tool_call(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    body = {"model": "claude", "messages": USER, "tools": ANTHROPIC_TOOLS, "stream": True}
    app.reply = sse_reply(anthropic_events("end_turn", False), named=True)
    record = scripted(cap, base_url, "/v1/messages", body)
    assert (record.tool_call_count, record.tool_names, record.error) == (0, [], None)
    app.reply = sse_reply(anthropic_events("tool_use", True), named=True)
    record = scripted(cap, base_url, "/v1/messages", body)
    assert record.tool_call_count is None and "middle of the stream was not kept" in (record.error or "")


def test_responses_final_event_lists_calls_from_a_dropped_middle(
    cap: Captured, app: ScriptedApp, base_url: str
) -> None:
    item = {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "arguments": '{"city":"Paris"}',
        "call_id": "call_1",
        "name": "get_weather",
    }

    def text(t: str) -> dict[str, Any]:
        return {
            "type": "response.output_text.delta",
            "item_id": "msg",
            "output_index": 0,
            "content_index": 0,
            "delta": t,
        }

    final = {
        "id": "resp",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1",
        "output": [item],
        "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
    }
    app.reply = sse_reply(
        [
            {"type": "response.created", "response": {**final, "status": "in_progress", "output": []}},
            *text_run(text),
            {"type": "response.output_item.added", "output_index": 1, "item": {**item, "arguments": ""}},
            *text_run(text),
            {"type": "response.completed", "response": final},
        ],
        named=True,
    )
    record = scripted(
        cap, base_url, "/v1/responses", {"model": "gpt-4.1", "input": "hi", "tools": RESPONSES_TOOLS, "stream": True}
    )
    assert (record.tool_call_count, record.tool_names, record.error) == (1, ["get_weather"], None)
    assert arguments(record) == [{"name": "get_weather", "arguments": '{"city":"Paris"}'}]


# ---- hostile payloads ---------------------------------------------------------------------------------------------


def body_call(cap: Captured, app: ScriptedApp, base_url: str, path: str, reply: Reply) -> CallRecord:
    app.reply = reply
    cap.items.clear()
    post(cap, base_url + path, {"model": "m", "messages": USER, "tools": CHAT_TOOLS})
    return cap.only()


def chat_body(message: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
    }


def test_ten_thousand_tool_calls_are_counted_names_bounded(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": f"tool_{i}", "arguments": f'{{"i":{i}}}'}}
        for i in range(10_000)
    ]
    record = body_call(
        cap, app, base_url, "/v1/chat/completions", json_reply(chat_body({"role": "assistant", "tool_calls": calls}))
    )
    assert record.tool_call_count == 10_000
    assert record.tool_names == [f"tool_{i}" for i in range(MAX_CALLS)]
    assert record.error is not None and f"first {MAX_CALLS} of 10000" in record.error and record.error_type is None
    assert len(record.tool_arguments or "") < 4096 + MAX_CALLS * 64  # content_limit, plus names and JSON framing


def test_ten_thousand_streamed_tool_calls(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    # Compact chunks (a call's first delta only), so that the whole stream fits the windows and nothing is dropped.
    events = [
        {"choices": [{"delta": {"tool_calls": [{"index": i, "function": {"name": "t"}}]}}]} for i in range(10_000)
    ]
    app.reply = sse_reply([*events, chat_chunk({}, "tool_calls")], done=True)
    record = scripted(
        cap, base_url, "/v1/chat/completions", {"model": "m", "messages": USER, "tools": CHAT_TOOLS, "stream": True}
    )
    assert record.tool_call_count == 10_000 and record.tool_names == ["t"] * MAX_CALLS


def test_non_string_names_and_odd_shapes_never_raise(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    calls = [
        {"function": {"name": 42, "arguments": "{}"}},
        {"function": {"name": None}},
        {"function": {"name": ["a"], "arguments": {"not": "text"}}},
        {"function": "nope"},
        "not a call",
        {"custom": {"name": "x" * 10_000, "input": "free text"}},
    ]
    record = body_call(
        cap, app, base_url, "/v1/chat/completions", json_reply(chat_body({"role": "assistant", "tool_calls": calls}))
    )
    assert record.error is None, record.error
    assert record.tool_call_count == 5
    assert record.tool_names == ["?", "?", "?", "?", "x" * MAX_NAME_CHARS]
    for shape in ("string", 7, None, {"a": 1}):
        record = body_call(
            cap,
            app,
            base_url,
            "/v1/chat/completions",
            json_reply(chat_body({"role": "assistant", "tool_calls": shape})),
        )
        assert (record.tool_call_count, record.tool_names, record.error) == (0, [], None)
    anthropic_body = {
        "type": "message",
        "model": "c",
        "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "name": {"x": 1}, "input": [1, 2]}, {"type": "tool_use"}, 5],
        "usage": {},
    }
    record = body_call(cap, app, base_url, "/v1/messages", json_reply(anthropic_body))
    assert (record.tool_call_count, record.tool_names) == (2, ["?", "?"])
    assert arguments(record)[0] == {"name": "?", "arguments": "[1,2]"}
    gemini_body = {
        "candidates": [
            {
                "content": {"parts": [{"functionCall": {"name": 3, "args": "x"}}, {"functionCall": "x"}, "p"]},
                "finishReason": "STOP",
            }
        ]
    }
    record = body_call(cap, app, base_url, "/v1beta/models/g:generateContent", json_reply(gemini_body))
    assert (record.tool_call_count, record.tool_names) == (1, ["?"])
    record = body_call(
        cap,
        app,
        base_url,
        "/api/chat",
        ndjson_reply(
            [
                {
                    "model": "m",
                    "message": {"tool_calls": [{"function": {"name": "a"}}, {"function": 1}, None]},
                    "done": True,
                }
            ]
        ),
    )
    assert (record.tool_call_count, record.tool_names) == (1, ["a"])


def test_responses_stream_with_hostile_events(cap: Captured, app: ScriptedApp, base_url: str) -> None:
    app.reply = sse_reply(
        [
            {"type": ["not", "a", "string"]},
            {
                "type": "response.output_item.added",
                "output_index": {"x": 1},
                "item": {"type": "function_call", "name": "a"},
            },
            {"type": "response.output_item.added", "output_index": 2, "item": {"type": ["x"]}},
            {"type": "response.function_call_arguments.delta", "output_index": [1], "delta": 5},
            {"type": "response.completed", "response": {"status": "completed", "output": "not a list"}},
        ],
        named=True,
    )
    record = scripted(
        cap, base_url, "/v1/responses", {"model": "m", "input": "hi", "tools": RESPONSES_TOOLS, "stream": True}
    )
    assert record.error is None, record.error
    assert (record.tool_call_count, record.tool_names) == (1, ["a"])


def test_huge_arguments_are_cut_at_content_limit(tmp_path: Path, app: ScriptedApp, base_url: str) -> None:
    cap = Captured(tmp_path / "small.db", content_limit=100, redact=lambda text: text.replace("Paris", "[city]"))
    try:
        huge = json.dumps({"city": "Paris", "blob": "y" * 5_000_000})
        calls = [
            {"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments": huge}}
            for i in range(3)
        ]
        record = body_call(
            cap,
            app,
            base_url,
            "/v1/chat/completions",
            json_reply(chat_body({"role": "assistant", "tool_calls": calls})),
        )
        entries = arguments(record)
        assert [e["name"] for e in entries] == ["get_weather"] * 3
        assert entries[0]["arguments"].startswith('{"city": "[city]", "blob": "yyy')  # redacted like other content
        assert all(e["arguments"].endswith("…[truncated]") for e in entries)
        assert sum(len(e["arguments"]) for e in entries) <= 100 + 3 * len("…[truncated]")
        secret = {
            "id": "c",
            "type": "function",
            "function": {"name": "login", "arguments": '{"api_key": "sk-proj-abcdefghijklmnopqrstuvwxyz123456"}'},
        }
        record = body_call(
            cap,
            app,
            base_url,
            "/v1/chat/completions",
            json_reply(chat_body({"role": "assistant", "tool_calls": [secret]})),
        )
        assert "sk-proj-" not in (record.tool_arguments or "") and "[redacted]" in (record.tool_arguments or "")
    finally:
        cap.monitor.close()
