"""The request's generation parameters, the response id, the output type and time per output chunk, exported for
real SDK calls against the fake LLM server; hostile and huge request bodies."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.trace import StatusCode

from llm_monitor_mw import Budget, BudgetExceeded, CallRecord, Monitor
from llm_monitor_mw.capture.request_params import FULL_PARSE_BYTES, SCAN_BYTES, read_params
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.otel import TPOC_METRIC
from tests.conftest import records
from tests.otel.conftest import OTel
from tests.otel.test_export import MESSAGES, SECONDS_BOUNDS, anthropic_client, metric_base, openai_client

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REQUEST_KEYS = {
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.top_k",
    "gen_ai.request.seed",
    "gen_ai.request.stop_sequences",
    "gen_ai.request.frequency_penalty",
    "gen_ai.request.presence_penalty",
    "gen_ai.request.choice.count",
    "gen_ai.output.type",
}
BIG_PROMPT = "All work and no play makes Jack a dull boy. " * 120_000  # 5.3 MB


def request_attributes(span: Any) -> dict[str, Any]:
    return {k: v for k, v in (span.attributes or {}).items() if k in REQUEST_KEYS}


# ---- spans of real SDK calls -------------------------------------------------------------------------------------


def test_openai_parameters_on_the_span(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    completion = openai_client(monitor, fake_llm).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_completion_tokens=50,
        temperature=0.3,
        top_p=0.9,
        seed=42,
        stop=["END", "STOP"],
        frequency_penalty=0.5,
        presence_penalty=-0.25,
        n=3,
        response_format={"type": "json_object"},
    )
    span = otel.span()
    assert request_attributes(span) == {
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 42,
        "gen_ai.request.stop_sequences": ("END", "STOP"),
        "gen_ai.request.frequency_penalty": 0.5,
        "gen_ai.request.presence_penalty": -0.25,
        "gen_ai.request.choice.count": 3,
        "gen_ai.output.type": "json",
    }
    assert span.attributes["gen_ai.response.id"] == completion.id  # type: ignore[index]


def test_parameters_the_request_did_not_set_are_absent(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=1, stop="END", max_tokens=9)
    plain, one_choice = otel.spans()
    assert request_attributes(plain) == {}
    # n=1 is the default: the conventions ask for choice.count only when it is not 1; a single stop string is a list.
    assert request_attributes(one_choice) == {
        "gen_ai.request.max_tokens": 9,
        "gen_ai.request.stop_sequences": ("END",),
    }


def test_anthropic_parameters_and_response_id(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = anthropic_client(monitor, fake_llm)
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        stop_sequences=["\n\nHuman:"],
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        messages=MESSAGES,
        extra_body={"temperature": 0.2, "top_k": 5, "top_p": 0.8},  # no longer in the 2.x SDK's signature
    )
    span = otel.span()
    assert request_attributes(span) == {
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_k": 5.0,  # a double in the conventions
        "gen_ai.request.top_p": 0.8,
        "gen_ai.request.stop_sequences": ("\n\nHuman:",),
        "gen_ai.output.type": "json",
    }
    assert isinstance(span.attributes["gen_ai.request.top_k"], float)  # type: ignore[index]
    assert span.attributes["gen_ai.response.id"] == message.id and message.id.startswith("msg_")  # type: ignore[index]


def test_gemini_and_ollama_spellings(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        gemini = client.post(
            f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent",
            json={
                "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
                "generationConfig": {
                    "maxOutputTokens": 80,
                    "temperature": 1.0,
                    "topP": 0.95,
                    "topK": 40,
                    "seed": 7,
                    "stopSequences": ["###"],
                    "candidateCount": 2,
                    "responseMimeType": "application/json",
                },
            },
        )
        ollama = client.post(
            f"{fake_llm.base_url}/api/chat",
            json={
                "model": "llama3.2",
                "messages": MESSAGES,
                "stream": False,
                "options": {"num_predict": 32, "temperature": 0.1, "top_k": 20, "stop": ["</s>"], "seed": 3},
            },
        )
        unlimited = client.post(  # num_predict -1 means "no limit": not a max_tokens
            f"{fake_llm.base_url}/api/chat",
            json={"model": "llama3.2", "messages": MESSAGES, "stream": False, "options": {"num_predict": -1}},
        )
    assert gemini.status_code == ollama.status_code == unlimited.status_code == 200
    gemini_span, ollama_span, unlimited_span = otel.spans()
    assert request_attributes(gemini_span) == {
        "gen_ai.request.max_tokens": 80,
        "gen_ai.request.temperature": 1.0,
        "gen_ai.request.top_p": 0.95,
        "gen_ai.request.top_k": 40.0,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("###",),
        "gen_ai.request.choice.count": 2,
        "gen_ai.output.type": "json",
    }
    assert request_attributes(ollama_span) == {
        "gen_ai.request.max_tokens": 32,
        "gen_ai.request.temperature": 0.1,
        "gen_ai.request.top_k": 20.0,
        "gen_ai.request.seed": 3,
        "gen_ai.request.stop_sequences": ("</s>",),
    }
    assert request_attributes(unlimited_span) == {}


def test_hostile_values_are_dropped(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # Raw bytes: an SDK would refuse to serialise some of these (1e999 is infinity once decoded).
    body = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot", '
        b'"top_p": 1e999, "max_tokens": -5, "seed": true, "stop": [1, 2], "n": 0, "presence_penalty": NaN, '
        b'"top_k": {"k": 1}, "frequency_penalty": 0.1, "response_format": {"type": "xml"}}'
    )
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(
            f"{fake_llm.base_url}/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert request_attributes(otel.span()) == {"gen_ai.request.frequency_penalty": 0.1}  # the one sane value


def test_a_5_mb_prompt_still_yields_the_parameters_after_it(
    otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    client = openai_client(monitor, fake_llm)
    # The SDK writes "messages" first, then the other parameters: all of them after the 5 MB prompt.
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": BIG_PROMPT}],
        max_tokens=77,
        temperature=0.4,
        seed=11,
    )
    # Anthropic's SDK writes max_tokens first: found at the body's start.
    anthropic_client(monitor, fake_llm).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=33,
        messages=[{"role": "user", "content": BIG_PROMPT}],
        extra_body={"temperature": 0.7},
    )
    assert all(len(seen["body"]) > 5_000_000 for seen in fake_llm.requests_seen[-2:])
    openai_span, anthropic_span = otel.spans()
    assert request_attributes(openai_span) == {
        "gen_ai.request.max_tokens": 77,
        "gen_ai.request.temperature": 0.4,
        "gen_ai.request.seed": 11,
    }
    assert request_attributes(anthropic_span) == {
        "gen_ai.request.max_tokens": 33,
        "gen_ai.request.temperature": 0.7,
    }


def test_time_per_output_chunk(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # not streamed: no observation
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-chunk-delay": "0.02"},
    )
    chunks = sum(1 for _ in stream)
    _, streamed = records(monitor)
    unit, [(attributes, point)] = otel.metrics()[TPOC_METRIC]
    assert (unit, attributes) == ("s", metric_base(fake_llm, "openai", "gpt-4o-mini", "gpt-4o-mini"))
    # One observation per chunk after the first content chunk (usage and [DONE] included: they are chunks too).
    assert 2 <= point.count <= chunks + 1
    # First content chunk to the last chunk read: within the time from the first chunk to the end of the stream.
    assert 0 < point.sum <= (streamed["ttlt_ms"] - streamed["ttft_ms"]) / 1000 + 1e-6
    assert point.sum / point.count >= 0.015  # the fake waited 0.02 s between chunks
    assert list(point.explicit_bounds) == SECONDS_BOUNDS
    assert sum(1 for n in point.bucket_counts if n) == 1  # each observation is the call's mean interval


def test_a_call_refused_by_a_budget_reports_budget_exceeded(
    otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    client = openai_client(monitor, fake_llm, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    cost = records(monitor)[0]["cost_usd"]
    monitor.alerts.add_budget(Budget("tiny", cost / 2, hard=True))
    with pytest.raises((BudgetExceeded, openai.APIConnectionError)):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    _, refused = records(monitor)
    _, span = otel.spans()
    assert refused["error_type"] == "BudgetExceeded"
    assert span.attributes["error.type"] == "BudgetExceeded"  # type: ignore[index]
    assert span.status.status_code is StatusCode.ERROR
    _, points = otel.metrics()["gen_ai.client.operation.duration"]
    assert {a.get("error.type") for a, _ in points} == {None, "BudgetExceeded"}


# ---- the listener, given records -------------------------------------------------------------------------------


def test_export_of_a_record_with_parameters_and_response_id(otel: OTel) -> None:
    base: dict[str, Any] = {
        "started_at": time.time(),
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "host": "api.openai.com",
        "status_code": 200,
        "duration_ms": 12.0,
        "request_model": "gpt-4o",
    }
    otel.exporter.export(
        CallRecord(
            **base,
            response_id="chatcmpl-abc",
            request_params={"max_tokens": 5, "choice_count": 1, "output_type": "image", "stop_sequences": ["x"]},
        )
    )
    otel.exporter.export(CallRecord(**base, request_params={"choice_count": 4, "output_type": "speech"}))
    otel.exporter.export(CallRecord(**base))
    first, second, bare = otel.spans_out.get_finished_spans()
    assert request_attributes(first) == {
        "gen_ai.request.max_tokens": 5,
        "gen_ai.output.type": "image",
        "gen_ai.request.stop_sequences": ("x",),
    }
    assert first.attributes["gen_ai.response.id"] == "chatcmpl-abc"  # type: ignore[index]
    assert request_attributes(second) == {"gen_ai.request.choice.count": 4, "gen_ai.output.type": "speech"}
    assert "gen_ai.response.id" not in (second.attributes or {})
    assert request_attributes(bare) == {}


# ---- the bounded scan ------------------------------------------------------------------------------------------


def _body(*parts: bytes) -> bytes:
    return b"".join(parts)


def test_a_large_body_is_scanned_at_both_ends_never_parsed_in_full() -> None:
    junk = b"x" * 5_000_000  # not JSON at all: a full parse would fail, so a result proves the scan
    body = _body(b'{"max_tokens": 100, "messages": [', junk, b'], "temperature": 0.5, "stop": ["a"], "n": 2}')
    assert len(body) > FULL_PARSE_BYTES
    assert read_params(body) == {"max_tokens": 100, "temperature": 0.5, "stop_sequences": ["a"], "choice_count": 2}
    assert read_params(b'{"messages": [' + junk + b"]}") is None


def test_the_scan_takes_top_level_keys_only() -> None:
    prompt = json.dumps('say {"temperature": 9, "max_tokens": 7} please ' * 20_000).encode()
    tool = {"type": "function", "function": {"name": "f", "parameters": {"properties": {"temperature": {}}}}}
    body = _body(
        b'{"metadata": {"seed": 5}, "messages": [{"role": "user", "content": ',
        prompt,
        b'}], "tools": ',
        json.dumps([tool]).encode(),
        b', "response_format": {"type": "json_schema", "json_schema": {"top_p": 0.1}}, "top_p": 0.2}',
    )
    assert len(body) > FULL_PARSE_BYTES
    # Not the prompt's "temperature", not the tool schema's, not metadata's seed nor the schema's top_p.
    assert read_params(body) == {"top_p": 0.2, "output_type": "json"}


def test_the_scan_reads_escapes_and_brackets_inside_strings() -> None:
    tricky = ["C:\\", 'say "hi"', '\\"', "} ] { [", '{"temperature": 3}', "\\\\", "é ✓"]
    tool = {"type": "function", "function": {"name": "f", "description": tricky, "parameters": {"x": tricky}}}
    prompt = json.dumps(tricky * 5_000).encode()
    body = _body(
        b'{"seed": 4, "metadata": ',
        json.dumps({"notes": tricky}).encode(),
        b', "messages": ',
        prompt,
        b', "temperature": 0.25, "tools": ',
        json.dumps([tool] * 20).encode(),
        b', "user": ',
        json.dumps(tricky, ensure_ascii=False).encode(),  # UTF-8 in the scanned tail
        b"}",
    )
    assert len(body) > FULL_PARSE_BYTES
    assert json.loads(body)["temperature"] == 0.25  # the body is valid JSON
    assert read_params(body) == {"seed": 4, "temperature": 0.25}


def test_a_parameter_between_two_large_values_is_unknown() -> None:
    big = json.dumps("y" * (2 * SCAN_BYTES)).encode()
    body = _body(b'{"messages": ', big, b', "max_tokens": 50, "tools": ', big, b', "top_p": 0.5}')
    assert read_params(body) == {"top_p": 0.5}  # max_tokens lies outside both windows: unknown, not guessed


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        (b'"temperature": 0', {"temperature": 0.0}),  # zero is zero
        (b'"temperature": 11', None),
        (b'"temperature": "0.5"', None),
        (b'"top_p": 1.5', None),
        (b'"max_tokens": 0', None),
        (b'"max_tokens": 12.0', {"max_tokens": 12}),
        (b'"max_tokens": 12.5', None),
        (b'"max_tokens": 1e999', None),
        (b'"seed": 18446744073709551616', None),  # beyond int64
        (b'"seed": -3', {"seed": -3}),
        (b'"stop": ["' + b"s" * 300 + b'"]', None),
        (b'"stop": ' + json.dumps(["s"] * 40).encode(), None),
        (b'"stop": []', None),
        (b'"n": 500', None),
        (b'"frequency_penalty": -Infinity', None),
        (b'"max_tokens": 5, "max_completion_tokens": 7', {"max_tokens": 7}),  # the current name wins
        (b'"max_completion_tokens": null, "max_tokens": 5', {"max_tokens": 5}),
    ],
)
def test_validation(fragment: bytes, expected: dict[str, Any] | None) -> None:
    small = b'{"model": "m", ' + fragment + b"}"
    large = b'{"messages": [' + json.dumps("z" * FULL_PARSE_BYTES).encode() + b"], " + fragment + b"}"
    assert read_params(small) == expected
    assert read_params(large) == expected  # the scan validates alike


def test_not_json_bodies() -> None:
    assert read_params(None) is None
    assert read_params(b"") is None
    assert read_params(b"[1, 2]") is None
    assert read_params(b"model=gpt&temperature=1") is None
    assert read_params(b'{"temperature": 0.5') is None  # cut short
    assert read_params(b'{"temperature": ' + b"9" * 5000 + b"}") is None  # an int too long to decode
