"""Operation, provider and server names: derived from the record as the conventions ask."""

from __future__ import annotations

import httpx
import openai
import pytest

from llm_monitor_mw import CallRecord, Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.otel import provider_name, server_port
from tests.httplibs import libs_for_openai
from tests.otel.conftest import OTel


@pytest.mark.parametrize(
    ("provider", "host", "endpoint", "expected"),
    [
        ("openai", "api.openai.com", "/v1/chat/completions", ("openai", 443)),
        (
            "azure.ai.openai",
            "eu.openai.azure.com",
            "/openai/deployments/gpt/chat/completions",
            ("azure.ai.openai", 443),
        ),
        ("gcp.gemini", "generativelanguage.googleapis.com", "/v1beta/models/g:generateContent", ("gcp.gemini", 443)),
        # Hosts the capture side could not name: the API they speak names them, the recorded port is kept.
        ("llm.internal:8000", "llm.internal", "/v1/chat/completions", ("openai", 8000)),
        ("127.0.0.1:9000", "127.0.0.1", "/v1/messages", ("anthropic", 9000)),
        ("gemini-proxy", "gemini-proxy", "/v1beta/models/g:generateContent", ("gcp.gen_ai", None)),
        ("ollama", "localhost", "/api/chat", ("ollama", 11434)),  # recognised by its default port
        # A name given with Monitor(hosts=...) is kept; its port is unknown.
        ("vllm", "10.0.0.5", "/v1/chat/completions", ("vllm", None)),
    ],
)
def test_provider_name_and_port(provider: str, host: str, endpoint: str, expected: tuple[str, int | None]) -> None:
    record = CallRecord(started_at=0.0, provider=provider, operation="chat", endpoint=endpoint, host=host)
    assert (provider_name(record), server_port(record)) == expected


def test_embeddings_span_and_metrics(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http)
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    span = otel.span()
    assert span.name == "embeddings text-embedding-3-small"
    attributes = dict(span.attributes or {})
    assert (attributes["gen_ai.operation.name"], attributes["gen_ai.provider.name"]) == ("embeddings", "openai")
    assert attributes["gen_ai.usage.input_tokens"] == 12  # 10 + two inputs
    assert attributes["gen_ai.usage.output_tokens"] == 0  # as recorded: zero means zero
    _, points = otel.metrics()["gen_ai.client.token.usage"]
    assert sorted((a["gen_ai.token.type"], a["gen_ai.operation.name"], p.sum) for a, p in points) == [
        ("input", "embeddings", 12),
        ("output", "embeddings", 0),
    ]


def test_gemini_generate_content_span(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        reply = client.post(
            f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]},
        )
    assert reply.status_code == 200
    span = otel.span()
    assert span.name == "generate_content gemini-2.5-flash"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert attributes["gen_ai.provider.name"] == "gcp.gen_ai"  # Gemini's API on a host we cannot name
    assert attributes["gen_ai.request.model"] == "gemini-2.5-flash"
    assert attributes["gen_ai.usage.input_tokens"] == 11
