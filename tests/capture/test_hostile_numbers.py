"""Hostile numbers from providers: validated where they enter, stored as NULL with a note, never losing a batch.

A scripted server on 127.0.0.1 answers in each provider family's shapes (bodies and streams) with usage figures a
buggy or hostile server might send, and with hostile rate-limit and retry headers; the rows are read back from
SQLite. Hypothesis checks the validators and every family's parsers on arbitrary JSON.
"""

from __future__ import annotations

import email.utils
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.numbers import COUNT_LIMIT, MAX_WAIT_S, count, header_count, header_seconds
from llm_monitor_mw.capture.providers import anthropic, gemini, ollama
from llm_monitor_mw.capture.providers import openai as openai_family
from llm_monitor_mw.capture.providers.base import Parsed
from tests.capture.scripted_server import Reply, ScriptedApp, json_reply, ndjson_reply, sse_reply
from tests.conftest import records

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
)
NAN = float("nan")
HOSTILE = [1e30, 10**20, -5, "12", True, NAN, 2**63 - 1, 2**53, 12.5, [3], {"n": 1}]
VALID = [0, 12, 12.0, 2**53 - 1]


# ---- one case per family and shape: where the value goes, the field that must be NULL, the note's name ----------


def openai_body(v: Any) -> Reply:
    usage = {"prompt_tokens": v, "completion_tokens": 5, "total_tokens": 7}
    return json_reply({"model": "gpt-4o-mini", "choices": [{"finish_reason": "stop"}], "usage": usage})


def openai_stream(v: Any) -> Reply:
    return sse_reply(
        [
            {"model": "gpt-4o-mini", "choices": [{"delta": {"content": "hi"}}]},
            {"model": "gpt-4o-mini", "choices": [{"delta": {}, "finish_reason": "stop"}]},
            {"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": v}},
        ],
        done=True,
    )


def responses_stream(v: Any) -> Reply:
    usage = {"input_tokens": 3, "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": v}}
    return sse_reply(
        [
            {"type": "response.created", "response": {"model": "gpt-5"}},
            {"type": "response.output_text.delta", "delta": "hi"},
            {"type": "response.completed", "response": {"model": "gpt-5", "status": "completed", "usage": usage}},
        ]
    )


def anthropic_body(v: Any) -> Reply:
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": v}
    return json_reply({"model": "claude-haiku-4-5", "stop_reason": "end_turn", "usage": usage})


def anthropic_stream(v: Any) -> Reply:
    return sse_reply(
        [
            {"type": "message_start", "message": {"model": "claude-haiku-4-5", "usage": {"input_tokens": v}}},
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}},
            {"type": "message_stop"},
        ]
    )


def gemini_body(v: Any) -> Reply:
    meta = {"promptTokenCount": 4, "candidatesTokenCount": v}
    return json_reply({"candidates": [{"finishReason": "STOP"}], "usageMetadata": meta, "modelVersion": "g"})


def gemini_stream(v: Any) -> Reply:
    meta = {"promptTokenCount": 4, "candidatesTokenCount": 3, "cachedContentTokenCount": v}
    return sse_reply(
        [
            {"candidates": [{"content": {"parts": [{"text": "hi"}]}}], "usageMetadata": meta},
            {"candidates": [{"finishReason": "STOP"}], "usageMetadata": meta},
        ]
    )


def ollama_body(v: Any) -> Reply:
    return json_reply({"model": "llama3.2", "done": True, "prompt_eval_count": 3, "eval_count": v})


def ollama_stream(v: Any) -> Reply:
    return ndjson_reply(
        [
            {"model": "llama3.2", "message": {"content": "hi"}, "done": False},
            {"model": "llama3.2", "done": True, "prompt_eval_count": v, "eval_count": 4},
        ]
    )


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
GEMINI = {"contents": [{"parts": [{"text": "hi"}]}]}
# (id, path, request body, reply for a value, record field that holds it, its name in the note)
CASES: list[tuple[str, str, dict[str, Any], Callable[[Any], Reply], str, str]] = [
    ("openai-body", "/v1/chat/completions", CHAT, openai_body, "input_tokens", "usage.prompt_tokens"),
    ("openai-sse", "/v1/chat/completions", {**CHAT, "stream": True}, openai_stream, "output_tokens",
     "usage.completion_tokens"),
    ("responses-sse", "/v1/responses", {"model": "gpt-5", "input": "hi", "stream": True}, responses_stream,
     "reasoning_tokens", "usage.output_tokens_details.reasoning_tokens"),
    ("anthropic-body", "/v1/messages", CHAT, anthropic_body, "cached_tokens", "usage.cache_read_input_tokens"),
    ("anthropic-sse", "/v1/messages", {**CHAT, "stream": True}, anthropic_stream, "input_tokens",
     "usage.input_tokens"),
    ("gemini-body", "/v1beta/models/g:generateContent", GEMINI, gemini_body, "output_tokens",
     "usageMetadata.candidatesTokenCount"),
    ("gemini-sse", "/v1beta/models/g:streamGenerateContent", GEMINI, gemini_stream, "cached_tokens",
     "usageMetadata.cachedContentTokenCount"),
    ("ollama-body", "/api/chat", {**CHAT, "stream": False}, ollama_body, "output_tokens", "eval_count"),
    ("ollama-ndjson", "/api/chat", CHAT, ollama_stream, "input_tokens", "prompt_eval_count"),
]  # fmt: skip


def assert_valid_counts(row: dict[str, Any]) -> None:
    for name in (*TOKEN_FIELDS, "ratelimit_remaining_requests", "ratelimit_remaining_tokens"):
        value = row[name]
        assert value is None or (type(value) is int and 0 <= value < COUNT_LIMIT), (name, value)
    for name in ("duration_ms", "ttft_ms", "ttlt_ms", "output_tokens_per_s", "retry_after_s"):
        assert row[name] is None or math.isfinite(row[name]), (name, row[name])


@pytest.mark.parametrize(("path", "body", "reply", "field", "name"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_usage_is_stored_as_null_with_a_note(
    path: str,
    body: dict[str, Any],
    reply: Callable[[Any], Reply],
    field: str,
    name: str,
    app: ScriptedApp,
    base_url: str,
    monitor: Monitor,
) -> None:
    cases = [(value, False) for value in HOSTILE] + [(value, True) for value in VALID]
    with httpx.Client(transport=monitor.transport()) as client:
        for value, _ in cases:
            app.reply = reply(value)
            client.post(base_url + path, json=body).read()
    rows = records(monitor)
    assert len(rows) == len(cases)
    for (value, valid), row in zip(cases, rows, strict=True):
        assert_valid_counts(row)
        if valid:
            assert row[field] == int(value), (value, row)
            if value < COUNT_LIMIT - 100:
                assert row["error"] is None, (value, row["error"])
            else:  # the largest count is valid; a sum of it with others may not be
                assert row["error"] is None or "(a sum) out of range; stored as NULL" in row["error"], row["error"]
        else:
            assert row[field] is None, (value, row)
            assert f"{name}=" in row["error"] and "stored as NULL" in row["error"], (value, row["error"])
            assert row["status_code"] == 200 and row["error_type"] is None  # a note, not a failed call
        assert row["operation"] and row["model"]  # the rest of the record is intact


def test_the_issue_example_note(app: ScriptedApp, base_url: str, monitor: Monitor) -> None:
    app.reply = openai_body(1e30)
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(base_url + "/v1/chat/completions", json=CHAT)
    (row,) = records(monitor)
    assert row["error"] == "usage.prompt_tokens=1e+30 out of range; stored as NULL"
    assert row["output_tokens"] == 5 and row["total_tokens"] == 7


def test_derived_sums_cannot_overflow(app: ScriptedApp, base_url: str, monitor: Monitor) -> None:
    """Each part is valid, their sum is not: Anthropic's input = uncached + cache writes + cache reads."""
    big = COUNT_LIMIT - 1
    usage = {"input_tokens": big, "cache_creation_input_tokens": big, "output_tokens": big}
    with httpx.Client(transport=monitor.transport()) as client:
        app.reply = json_reply({"model": "claude-haiku-4-5", "usage": usage})
        client.post(base_url + "/v1/messages", json=CHAT)
        meta = {"promptTokenCount": big, "candidatesTokenCount": big}
        app.reply = json_reply({"candidates": [{"finishReason": "STOP"}], "usageMetadata": meta})
        client.post(base_url + "/v1beta/models/g:generateContent", json=GEMINI)
    claude, gem = records(monitor)
    for row in (claude, gem):
        assert_valid_counts(row)
        assert row["total_tokens"] is None and "(a sum) out of range" in row["error"]
    assert claude["input_tokens"] is None and claude["output_tokens"] == big and claude["cache_creation_tokens"] == big
    assert gem["input_tokens"] == big and gem["output_tokens"] == big


HOSTILE_HEADERS: list[tuple[list[tuple[str, str]], dict[str, Any], str | None]] = [
    ([("x-ratelimit-remaining-requests", "12"), ("x-ratelimit-remaining-tokens", "40000")],
     {"ratelimit_remaining_requests": 12, "ratelimit_remaining_tokens": 40000}, None),
    ([("x-ratelimit-remaining-requests", "12.0")], {"ratelimit_remaining_requests": 12}, None),
    ([("x-ratelimit-remaining-requests", "1e30")], {"ratelimit_remaining_requests": None},
     "x-ratelimit-remaining-requests='1e30' out of range"),
    ([("x-ratelimit-remaining-tokens", "9223372036854775807")], {"ratelimit_remaining_tokens": None},
     "x-ratelimit-remaining-tokens='9223372036854775807' out of range"),
    ([("anthropic-ratelimit-requests-remaining", "-5")], {"ratelimit_remaining_requests": None},
     "anthropic-ratelimit-requests-remaining='-5' out of range"),
    ([("anthropic-ratelimit-tokens-remaining", "lots")], {"ratelimit_remaining_tokens": None},
     "anthropic-ratelimit-tokens-remaining='lots' is not a number"),
    ([("x-ratelimit-remaining-tokens", "nan")], {"ratelimit_remaining_tokens": None}, "out of range"),
    ([("retry-after", "inf")], {"retry_after_s": None}, "retry-after='inf' out of range"),
    ([("retry-after", "1e999")], {"retry_after_s": None}, "retry-after='1e999' out of range"),
    ([("retry-after", "nan")], {"retry_after_s": None}, "retry-after='nan' out of range"),
    ([("retry-after", "-5")], {"retry_after_s": None}, "retry-after='-5' out of range"),
    ([("retry-after", str(MAX_WAIT_S * 2))], {"retry_after_s": None}, "out of range"),
    ([("retry-after", "soon")], {"retry_after_s": None}, "retry-after='soon' is not a number"),
    ([("retry-after", "20")], {"retry_after_s": 20.0}, None),
    ([("retry-after-ms", "1500"), ("retry-after", "9")], {"retry_after_s": 1.5}, None),
    ([("retry-after-ms", "1e999")], {"retry_after_s": None}, "retry-after-ms='1e999' out of range"),
    ([("retry-after-ms", "-1")], {"retry_after_s": None}, "retry-after-ms='-1' out of range"),
    ([("x-request-id", "req_" + "a" * 5000)], {"request_id": "req_" + "a" * 252}, None),
    ([("x-request-id", "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz")], {"request_id": "Bearer [redacted]"}, None),
]  # fmt: skip


def test_hostile_headers(app: ScriptedApp, base_url: str, monitor: Monitor) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        for headers, _, _ in HOSTILE_HEADERS:
            reply = openai_body(3)
            app.reply = Reply(reply.chunks, 200, [*reply.headers, *headers])
            client.post(base_url + "/v1/chat/completions", json=CHAT)
        # An HTTP-date retry-after (RFC 9110) counts from the call.
        later = email.utils.formatdate(time.time() + 120, usegmt=True)
        app.reply = Reply(openai_body(3).chunks, 429, [("content-type", "application/json"), ("retry-after", later)])
        client.post(base_url + "/v1/chat/completions", json=CHAT)
    rows = records(monitor)
    assert len(rows) == len(HOSTILE_HEADERS) + 1
    for (headers, expected, note), row in zip(HOSTILE_HEADERS, rows, strict=False):
        assert_valid_counts(row)
        assert {k: row[k] for k in expected} == expected, headers
        if note is None:
            assert row["error"] is None, (headers, row["error"])
        else:
            assert note in row["error"] and "stored as NULL" in row["error"], (headers, row["error"])
        assert row["input_tokens"] == 3  # the body was parsed as usual
    assert 100 <= rows[-1]["retry_after_s"] <= 121


@pytest.mark.parametrize("hostile", [1e30, 10**20, 2**63 - 1], ids=["1e30", "10**20", "2**63-1"])
def test_one_hostile_response_never_takes_its_batch(
    hostile: Any, app: ScriptedApp, base_url: str, tmp_path: Path
) -> None:
    """100 good calls, 1 hostile, 100 good, through the real openai SDK: 201 rows on disk, one with NULL + note."""
    db = tmp_path / "calls.db"
    good = openai_body(7)

    def script(path: str, body: bytes) -> Reply:
        if b"hostile" in body:
            reply = openai_body(hostile)
            return Reply(reply.chunks, 200, [*reply.headers, ("x-ratelimit-remaining-tokens", str(hostile))])
        return good

    app.script = script
    try:
        # A long flush interval: the writer takes all 201 records in a few large batches.
        with Monitor(db, flush_interval=1.0) as monitor:
            http = httpx.Client(transport=monitor.transport())
            client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)
            for i in range(201):
                content = "hostile" if i == 100 else "hello"
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
            assert monitor.flush(timeout=10)
    finally:
        app.script = None
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY id")]
        total = conn.execute("SELECT sum(input_tokens), sum(ratelimit_remaining_tokens) FROM calls").fetchone()
    assert len(rows) == 201
    bad = rows[100]
    assert bad["input_tokens"] is None and bad["ratelimit_remaining_tokens"] is None
    assert "usage.prompt_tokens=" in bad["error"] and "x-ratelimit-remaining-tokens=" in bad["error"]
    assert bad["output_tokens"] == 5 and bad["total_tokens"] == 7
    assert all(r["input_tokens"] == 7 and r["error"] is None for i, r in enumerate(rows) if i != 100)
    assert tuple(total) == (200 * 7, None)  # sums over the column work


# ---- properties: the validators and every family's parsers on arbitrary input ------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def valid_count(value: Any) -> bool:
    return value is None or (type(value) is int and 0 <= value < COUNT_LIMIT)


@given(json_values)
def test_count_accepts_exactly_the_valid_counts(value: Any) -> None:
    notes: list[str] = []
    got = count(value, "x", notes)
    assert valid_count(got)
    expected_ok = (type(value) is int and 0 <= value < COUNT_LIMIT) or (
        type(value) is float and value.is_integer() and 0 <= value < COUNT_LIMIT
    )
    if expected_ok:
        assert got == value and not notes
    elif value is None:
        assert got is None and not notes
    else:
        assert got is None and len(notes) == 1 and notes[0].startswith("x=") and len(notes[0]) < 120


@given(st.one_of(st.text(max_size=30), st.integers().map(str), st.floats().map(repr)))
def test_header_validators_on_any_text(text: str) -> None:
    notes: list[str] = []
    got = header_count(text, "h", notes)
    assert valid_count(got) and (got is not None or len(notes) == 1)
    seconds = header_seconds(text, 0.001, "h", notes)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_WAIT_S)


USAGE_KEYS = [
    "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens",
    "cache_creation_input_tokens", "cache_read_input_tokens", "promptTokenCount", "candidatesTokenCount",
    "thoughtsTokenCount", "toolUsePromptTokenCount", "cachedContentTokenCount", "prompt_eval_count", "eval_count",
]  # fmt: skip
usages = st.dictionaries(st.sampled_from(USAGE_KEYS), json_values, max_size=6).flatmap(
    lambda usage: st.fixed_dictionaries(
        {
            "type": st.sampled_from(["message_start", "message_delta", "response.completed", None]),
            "usage": st.just(usage),
            "usageMetadata": st.just(usage),
            "message": st.fixed_dictionaries({"usage": st.just(usage)}),
            "response": st.fixed_dictionaries({"usage": st.just(usage)}),
            "done": st.booleans(),
            "choices": st.just([{"finish_reason": "stop"}]),
        }
    )
)
FAMILY_OPS = [
    (openai_family, "chat"), (openai_family, "responses"), (openai_family, "embeddings"),
    (anthropic, "chat"), (gemini, "generate_content"), (gemini, "embeddings"),
    (ollama, "chat"), (ollama, "embeddings"),
]  # fmt: skip


@settings(max_examples=300)
@given(st.one_of(usages, json_values), st.booleans())
def test_parsers_only_ever_produce_valid_counts(payload: Any, want_text: bool) -> None:
    for family, op in FAMILY_OPS:
        for parse in (family.parse_body, family.parse_event):
            parsed = Parsed()
            parse(op, payload, parsed, want_text)
            for name in TOKEN_FIELDS:
                assert valid_count(getattr(parsed, name)), (family.name, op, name, getattr(parsed, name))
            assert all(isinstance(note, str) and "stored as NULL" in note for note in parsed.notes)
