"""The bundled fake LLM server speaks each provider's real wire format: the official SDKs parse it cleanly."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from llm_monitor_mw.fake import (
    AZURE_CHAT_MODEL,
    BASE_PROMPT_TOKENS,
    CACHED_TOKENS,
    EMBEDDING_DIM,
    REASONING_TOKENS,
    REPLY_TEXT,
    FakeLLMServer,
    reply_pieces,
)

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture()
def oai(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", http_client=httpx2.Client())
    yield client
    client.close()


@pytest.fixture()
def claude(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=server.base_url, api_key="test")
    yield client
    client.close()


@pytest.fixture()
def http(server: FakeLLMServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def _key() -> str:
    return uuid.uuid4().hex


def _sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


# ---------------------------------------------------------------------------------------------------------------------
# server basics


def test_start_stop_and_requests_seen() -> None:
    with FakeLLMServer() as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert not srv.base_url.endswith(":0")
        r = httpx.post(srv.base_url + "/v1/chat/completions?x=1", json={"model": "m", "messages": MESSAGES})
        assert r.status_code == 200
        seen = srv.requests_seen[-1]
        assert seen["method"] == "POST"
        assert seen["path"] == "/v1/chat/completions"
        assert seen["query"] == {"x": "1"}
        assert seen["headers"]["content-type"] == "application/json"
        assert json.loads(seen["body"])["model"] == "m"
    with pytest.raises(httpx.ConnectError):
        httpx.post(srv.base_url + "/v1/chat/completions", json={})


def test_unknown_route_is_404(http: httpx.Client) -> None:
    r = http.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------------------------------------------------
# OpenAI


def test_openai_chat_non_stream(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    assert "openai-processing-ms" in raw.headers
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == REPLY_TEXT
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == BASE_PROMPT_TOKENS + 1
    assert usage.completion_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS


def test_openai_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_chat_stream_without_usage_and_chunk_count(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": "3"}
    )
    chunks = list(stream)
    assert all(c.choices for c in chunks)  # no usage chunk unless stream_options.include_usage
    assert all(getattr(c, "usage", None) is None for c in chunks)
    assert len(chunks) == 1 + 3 + 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(reply_pieces(3))


def test_openai_embeddings(oai: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; an explicit "float" gets plain lists.
    for kwargs in ({}, {"encoding_format": "float"}):
        result = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"], **kwargs)
        assert result.object == "list"
        assert [e.index for e in result.data] == [0, 1, 2]
        assert all(len(e.embedding) == EMBEDDING_DIM for e in result.data)
        assert all(isinstance(v, float) for v in result.data[1].embedding)
        assert result.usage.prompt_tokens == BASE_PROMPT_TOKENS + 3 == result.usage.total_tokens
    plain = oai.embeddings.create(model="m", input="one", encoding_format="float")
    decoded = oai.embeddings.create(model="m", input="one")
    assert plain.data[0].embedding == decoded.data[0].embedding


def test_openai_legacy_completions(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == REPLY_TEXT
    assert completion.usage is not None and completion.usage.prompt_tokens == BASE_PROMPT_TOKENS + 1
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY_TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_openai_responses_non_stream(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4.1-mini", input="Say hello")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "gpt-4.1-mini"
    assert response.output_text == REPLY_TEXT
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == BASE_PROMPT_TOKENS + 1
    assert usage.input_tokens_details.cached_tokens == CACHED_TOKENS
    assert usage.output_tokens == 5
    assert usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_openai_responses_stream(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4.1-mini", input="Say hello", stream=True))
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None and completed.response.usage.output_tokens == 5
    # The SDK's accumulating helper is strict about ids and ordering; it must accept the stream too.
    with oai.responses.stream(model="gpt-4.1-mini", input="Say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY_TEXT
    assert final.output_text == REPLY_TEXT


def test_azure_openai(server: FakeLLMServer) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=server.base_url, api_key="test", api_version="2024-10-21", http_client=httpx2.Client()
    )
    completion = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert completion.model == AZURE_CHAT_MODEL
    assert completion.choices[0].message.content == REPLY_TEXT
    assert server.requests_seen[-1]["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert server.requests_seen[-1]["query"]["api-version"] == "2024-10-21"
    embeddings = client.embeddings.create(model="my-embedder", input="x")
    assert len(embeddings.data[0].embedding) == EMBEDDING_DIM
    client.close()


def test_openai_in_stream_error_raises(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_headers={"x-fake-behavior": "error-event"}
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_openai_big_body(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="m", messages=MESSAGES, extra_headers={"x-fake-behavior": "big-body"}
    )
    content = completion.choices[0].message.content or ""
    assert len(content) == 5 * 1024 * 1024
    assert completion.usage is not None and completion.usage.completion_tokens == len(content) // 4


# ---------------------------------------------------------------------------------------------------------------------
# Anthropic


def test_anthropic_messages_non_stream(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
    assert raw.headers["request-id"].startswith("req_")
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) > 0
    assert "anthropic-ratelimit-tokens-remaining" in raw.headers
    message = raw.parse()
    assert message.type == "message"
    assert message.model == "claude-haiku-4-5"
    assert message.content[0].type == "text" and message.content[0].text == REPLY_TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == BASE_PROMPT_TOKENS + 1
    assert message.usage.output_tokens == 5
    assert message.usage.cache_read_input_tokens == CACHED_TOKENS
    assert message.usage.cache_creation_input_tokens == 0


def test_anthropic_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY_TEXT
    assert final.content[0].type == "text" and final.content[0].text == REPLY_TEXT
    assert final.usage.input_tokens == BASE_PROMPT_TOKENS + 1
    assert final.usage.output_tokens == 5
    assert final.stop_reason == "end_turn"


def test_anthropic_raw_event_sequence(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model="m", max_tokens=100, messages=MESSAGES, stream=True))
    types = [e.type for e in events]  # the SDK drops "ping"
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_anthropic_in_stream_error_raises(claude: anthropic.Anthropic) -> None:
    stream = claude.messages.create(
        model="m", max_tokens=100, messages=MESSAGES, stream=True, extra_headers={"x-fake-behavior": "error-event"}
    )
    with pytest.raises(anthropic.APIError, match="overloaded_error"):
        list(stream)


# ---------------------------------------------------------------------------------------------------------------------
# Gemini


def _assert_gemini_usage(usage: dict[str, Any], chunks: int = 5) -> None:
    assert usage["promptTokenCount"] == BASE_PROMPT_TOKENS + 1
    assert usage["candidatesTokenCount"] == chunks
    assert usage["cachedContentTokenCount"] == CACHED_TOKENS
    assert usage["thoughtsTokenCount"] == REASONING_TOKENS
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + chunks + REASONING_TOKENS


GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}


def test_gemini_generate_content(http: httpx.Client) -> None:
    r = http.post("/v1beta/models/gemini-2.0-flash:generateContent", json=GEMINI_BODY)
    assert r.status_code == 200
    data = r.json()
    candidate = data["candidates"][0]
    assert candidate["content"]["role"] == "model"
    assert candidate["content"]["parts"][0]["text"] == REPLY_TEXT
    assert candidate["finishReason"] == "STOP"
    assert data["modelVersion"] == "gemini-2.0-flash"
    assert data["responseId"]
    _assert_gemini_usage(data["usageMetadata"])


def test_gemini_stream_sse(http: httpx.Client) -> None:
    r = http.post("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", json=GEMINI_BODY)
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(d) for d in _sse_data(r.text)]
    assert len(chunks) == 5
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == REPLY_TEXT
    assert all("usageMetadata" not in c for c in chunks[:-1])
    _assert_gemini_usage(chunks[-1]["usageMetadata"])
    assert {c["responseId"] for c in chunks} == {chunks[0]["responseId"]}


def test_gemini_stream_json_array(http: httpx.Client) -> None:
    r = http.post("/v1beta/models/gemini-2.0-flash:streamGenerateContent", json=GEMINI_BODY)
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) == 5
    _assert_gemini_usage(chunks[-1]["usageMetadata"])


def test_gemini_embed_content(http: httpx.Client) -> None:
    r = http.post("/v1beta/models/text-embedding-004:embedContent", json={"content": {"parts": [{"text": "x"}]}})
    assert len(r.json()["embedding"]["values"]) == EMBEDDING_DIM


# ---------------------------------------------------------------------------------------------------------------------
# Ollama


def test_ollama_chat_streams_ndjson_by_default(http: httpx.Client) -> None:
    r = http.post("/api/chat", json={"model": "llama3.2", "messages": MESSAGES})
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    assert "".join(line["message"]["content"] for line in lines) == REPLY_TEXT
    last = lines[-1]
    assert last["done_reason"] == "stop"
    assert last["prompt_eval_count"] == BASE_PROMPT_TOKENS + 1
    assert last["eval_count"] == 5
    assert last["total_duration"] > 0 and last["model"] == "llama3.2"


def test_ollama_non_stream_generate_and_embed(http: httpx.Client) -> None:
    chat = http.post("/api/chat", json={"model": "llama3.2", "messages": MESSAGES, "stream": False}).json()
    assert chat["done"] is True and chat["message"]["content"] == REPLY_TEXT
    gen = http.post("/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False}).json()
    assert gen["response"] == REPLY_TEXT and gen["eval_count"] == 5
    streamed = [
        json.loads(x) for x in http.post("/api/generate", json={"model": "m", "prompt": "hi"}).text.splitlines()
    ]
    assert streamed[-1]["done"] is True and "context" in streamed[-1]
    embed = http.post("/api/embed", json={"model": "all-minilm", "input": ["a", "b"]}).json()
    assert len(embed["embeddings"]) == 2 and len(embed["embeddings"][0]) == EMBEDDING_DIM
    assert embed["prompt_eval_count"] == BASE_PROMPT_TOKENS + 2


def test_ollama_openai_compatible_route(server: FakeLLMServer) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="ollama", http_client=httpx2.Client())
    completion = client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    assert completion.model == "llama3.2" and completion.choices[0].message.content == REPLY_TEXT
    client.close()


# ---------------------------------------------------------------------------------------------------------------------
# control headers


def test_gzip_stream_is_incremental(server: FakeLLMServer) -> None:
    headers = {"x-fake-gzip": "1", "x-fake-chunk-delay": "0.2"}
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.headers["content-encoding"] == "gzip"
        raw_iter = r.iter_raw()
        first = next(raw_iter)
        first_at = time.monotonic() - started
        rest = b"".join(raw_iter)
    total = time.monotonic() - started
    assert first_at < 0.5 and total > 1.0  # the first event arrived long before the last one (7 x 0.2s)
    text = gzip.decompress(first + rest).decode()
    assert _sse_data(text)[-1] == "[DONE]"
    # and the SDK transparently decodes it
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", http_client=httpx2.Client())
    chunks = client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_headers={"x-fake-gzip": "1"}
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY_TEXT
    client.close()


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/v1/chat/completions", lambda b: b["error"]["code"] == "rate_limit_exceeded" and "param" in b["error"]),
        ("/v1/messages", lambda b: b["type"] == "error" and b["error"]["type"] == "rate_limit_error"),
        ("/v1beta/models/gemini-2.0-flash:generateContent", lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED"),
        ("/api/chat", lambda b: isinstance(b["error"], str)),
    ],
)
def test_status_429_shapes(http: httpx.Client, path: str, check: Any) -> None:
    r = http.post(path, json={"model": "m", "messages": MESSAGES}, headers={"x-fake-status": "429"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "0"
    assert check(r.json())
    if path == "/v1/chat/completions":
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    if path == "/v1/messages":
        assert r.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert r.json()["request_id"] == r.headers["request-id"]


def test_sdk_raises_rate_limit_error(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.RateLimitError):
        oai.with_options(max_retries=0).chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"x-fake-status": "429"}
        )
    with pytest.raises(anthropic.RateLimitError):
        claude.with_options(max_retries=0).messages.create(
            model="m", max_tokens=10, messages=MESSAGES, extra_headers={"x-fake-status": "429"}
        )


def test_fail_times_then_succeed_with_sdk_retries(
    server: FakeLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    key = _key()
    started = time.monotonic()
    completion = oai.chat.completions.create(
        model="m",
        messages=MESSAGES,
        extra_headers={"x-fake-status": "503", "x-fake-fail-times": "2", "x-fake-key": key},
    )
    assert completion.choices[0].message.content == REPLY_TEXT
    assert sum(1 for r in server.requests_seen if r["headers"].get("x-fake-key") == key) == 3
    key = _key()
    message = claude.messages.create(
        model="m",
        max_tokens=10,
        messages=MESSAGES,
        extra_headers={"x-fake-status": "429", "x-fake-fail-times": "1", "x-fake-key": key},
    )
    assert message.content[0].type == "text"
    assert sum(1 for r in server.requests_seen if r["headers"].get("x-fake-key") == key) == 2
    assert time.monotonic() - started < 2  # retry-after-ms: 1 keeps SDK backoff out of the way


def test_fail_times_counts_per_key(http: httpx.Client) -> None:
    headers = {"x-fake-status": "500", "x-fake-fail-times": "1", "x-fake-key": _key()}
    assert http.post("/v1/chat/completions", json={}, headers=headers).status_code == 500
    assert http.post("/v1/chat/completions", json={}, headers=headers).status_code == 200
    headers["x-fake-key"] = _key()
    assert http.post("/v1/chat/completions", json={}, headers=headers).status_code == 500


def test_malformed_and_non_json(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={}, headers={"x-fake-behavior": "malformed-json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.text == '{"id": "x", "usage": {'
    r = http.post("/v1/messages", json={}, headers={"x-fake-behavior": "non-json"})
    assert r.headers["content-type"].startswith("text/html") and r.text == "<html>oops</html>"


def test_truncate_malformed_sse_and_disconnect(http: httpx.Client) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    r = http.post("/v1/chat/completions", json=body, headers={"x-fake-behavior": "truncate"})
    assert r.status_code == 200 and "[DONE]" not in r.text and 'finish_reason":"stop' not in r.text
    r = http.post("/v1/messages", json=body, headers={"x-fake-behavior": "truncate"})
    assert "message_stop" not in r.text and "message_start" in r.text
    r = http.post("/v1/chat/completions", json=body, headers={"x-fake-behavior": "malformed-sse"})
    data = _sse_data(r.text)
    assert "{not json" in data and data[-1] == "[DONE]"
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/chat/completions", json=body, headers={"x-fake-behavior": "disconnect"})
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/chat", json={"model": "m", "messages": MESSAGES}, headers={"x-fake-behavior": "disconnect"})
    assert http.post("/api/chat", json={"model": "m", "stream": False}).status_code == 200  # server still fine


@pytest.mark.parametrize(
    ("path", "field"),
    [("/v1/chat/completions", ("error", "message")), ("/v1/messages", ("error", "message")), ("/api/chat", ("error",))],
)
def test_error_message_control(http: httpx.Client, path: str, field: tuple[str, ...]) -> None:
    r = http.post(path, json={"model": "m"}, headers={"x-fake-status": "401", "x-fake-error-message": "bad key xyz"})
    assert r.status_code == 401
    value: Any = r.json()
    for name in field:
        value = value[name]
    assert value == "bad key xyz"


def _run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llm_monitor_mw.fake_llm", *args], capture_output=True, text=True, timeout=60
    )


def test_module_help() -> None:
    result = _run_module("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m llm_monitor_mw.fake_llm") and "--port" in result.stdout
    assert "Traceback" not in result.stderr
    bad = _run_module("not-a-port")
    assert bad.returncode == 2 and "invalid int value" in bad.stderr and "Traceback" not in bad.stderr


def test_module_serves_and_reports_a_busy_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_monitor_mw.fake_llm", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fake LLM serving on http://127.0.0.1:"), line
        base = line.split()[4]
        reply = httpx.post(base + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=10)
        assert reply.json()["choices"][0]["message"]["content"] == REPLY_TEXT
        busy = _run_module(base.rsplit(":", 1)[1])
        assert busy.returncode == 1 and "fake LLM: error:" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        proc.terminate()
        proc.wait(15)


def test_old_module_name_is_the_same_server() -> None:
    import llm_monitor_mw.fake as fake
    import llm_monitor_mw.fake_llm as old

    for name in old.__all__:
        if name != "main":
            assert getattr(old, name) is getattr(fake, name), name
    assert old.FakeLLMServer is FakeLLMServer


def test_package_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_monitor_mw.fake", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m llm_monitor_mw.fake ") and "--port" in result.stdout


def test_each_provider_family_has_its_module() -> None:
    from llm_monitor_mw.fake import anthropic, gemini, ollama, openai

    for module, name in ((openai, "openai"), (anthropic, "anthropic"), (gemini, "gemini"), (ollama, "ollama")):
        assert name == module.NAME
        assert "error" in module.error_body(500, "m")
    paths = [path for module in (openai, anthropic, ollama) for path, _, _ in module.ROUTES]
    assert "/v1/chat/completions" in paths and "/v1/messages" in paths and "/api/chat" in paths
    assert set(gemini.METHODS) >= {"generateContent", "streamGenerateContent", "countTokens"}
