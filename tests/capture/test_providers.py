"""Gemini, Ollama (native and /v1), Azure OpenAI and provider naming, over plain httpx/httpx2 clients."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.providers import Registry
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records

GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}


def post(monitor: Monitor, url: str, body: Any, **kw: Any) -> httpx.Response:
    with httpx.Client(transport=monitor.transport()) as client:
        response = client.post(url, json=body, **kw)
        response.read()
        return response


def test_gemini_generate_content(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSySECRETSECRETSECRETSECRET"
    data = post(monitor, url, GEMINI_BODY).json()
    meta = data["usageMetadata"]
    row = only_record(monitor)
    assert (row["operation"], row["request_model"], row["streamed"]) == ("generate_content", "gemini-2.5-flash", False)
    assert row["endpoint"] == "/v1beta/models/gemini-2.5-flash:generateContent"  # no query string: no API key
    assert row["input_tokens"] == meta["promptTokenCount"]
    assert row["output_tokens"] == meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
    assert row["reasoning_tokens"] == meta["thoughtsTokenCount"]
    assert row["cached_tokens"] == meta["cachedContentTokenCount"]
    assert row["total_tokens"] == row["input_tokens"] + row["output_tokens"]
    assert row["finish_reason"] == "STOP"


@pytest.mark.parametrize("alt_sse", [True, False], ids=["sse", "json-array"])
def test_gemini_stream(alt_sse: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent" + ("?alt=sse" if alt_sse else "")
    post(monitor, url, GEMINI_BODY)
    row = only_record(monitor)
    assert row["streamed"] is True and row["operation"] == "generate_content"
    assert row["ok"] and row["error"] is None, row["error"]
    assert row["output_tokens"] == 5 + 1 and row["reasoning_tokens"] == 1
    assert row["ttft_ms"] is not None


def test_gemini_embed_and_error(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    post(monitor, f"{fake_llm.base_url}/v1beta/models/text-embedding-004:embedContent", {"content": {"parts": []}})
    post(
        monitor,
        f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent",
        GEMINI_BODY,
        headers={"x-fake-status": "429"},
    )
    embed, error = records(monitor)
    assert embed["operation"] == "embeddings" and embed["ok"]
    assert error["status_code"] == 429 and error["error_type"] == "RESOURCE_EXHAUSTED" and error["error"]


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
@pytest.mark.parametrize("stream", [True, False])
def test_ollama_native(path: str, stream: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    body: dict[str, Any] = {"model": "llama3.2"}
    body["messages" if path == "/api/chat" else "prompt"] = (
        [{"role": "user", "content": "hi"}] if path == "/api/chat" else "hi"
    )
    if not stream:
        body["stream"] = False  # Ollama streams unless told not to
    post(monitor, fake_llm.base_url + path, body)
    row = only_record(monitor)
    assert row["streamed"] is stream
    assert row["operation"] == ("chat" if path == "/api/chat" else "text_completion")
    assert row["model"] == "llama3.2" and row["ok"] and row["error"] is None, row["error"]
    assert row["input_tokens"] is not None and row["output_tokens"] == 5
    if stream:
        assert row["ttft_ms"] is not None


def test_ollama_embed(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    post(monitor, fake_llm.base_url + "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]})
    row = only_record(monitor)
    assert row["operation"] == "embeddings" and row["input_tokens"] is not None and row["output_tokens"] == 0


def test_azure_openai_deployment(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = f"{fake_llm.base_url}/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    post(monitor, url, {"messages": [{"role": "user", "content": "hi"}]}, headers={"api-key": "secret"})
    row = only_record(monitor)
    assert row["request_model"] == "my-gpt4o"  # the deployment name, from the path
    assert row["response_model"] and row["response_model"] != "my-gpt4o"
    assert row["total_tokens"] is not None


def test_async_plain_httpx(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=monitor.async_transport()) as client:
            await client.post(fake_llm.base_url + "/api/chat", json={"model": "llama3.2", "messages": []})

    asyncio.run(main())
    assert only_record(monitor)["streamed"] is True


def test_other_traffic_is_not_recorded(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        assert client.get(fake_llm.base_url + "/v1/models").status_code == 404
        client.get(fake_llm.base_url + "/v1/chat/completions")  # GET is not an LLM call
        client.post(fake_llm.base_url + "/v1/messages/count_tokens", json={})
    assert records(monitor) == []


@pytest.mark.parametrize(
    ("host", "port", "path", "provider", "operation"),
    [
        ("api.openai.com", None, "/v1/chat/completions", "openai", "chat"),
        ("api.openai.com", None, "/v1/responses", "openai", "chat"),
        ("api.anthropic.com", None, "/v1/messages", "anthropic", "chat"),
        (
            "generativelanguage.googleapis.com",
            None,
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "gcp.gemini",
            "generate_content",
        ),
        ("generativelanguage.googleapis.com", None, "/v1beta/openai/chat/completions", "gcp.gemini", "chat"),
        ("myres.openai.azure.com", None, "/openai/deployments/d/embeddings", "azure.ai.openai", "embeddings"),
        ("api.groq.com", None, "/openai/v1/chat/completions", "groq", "chat"),
        ("openrouter.ai", None, "/api/v1/chat/completions", "openrouter", "chat"),
        ("api.mistral.ai", None, "/v1/chat/completions", "mistral_ai", "chat"),
        ("api.deepseek.com", None, "/chat/completions", "deepseek", "chat"),
        ("api.together.xyz", None, "/v1/completions", "together", "text_completion"),
        ("localhost", 11434, "/v1/chat/completions", "ollama", "chat"),
        ("localhost", 11434, "/api/embed", "ollama", "embeddings"),
        ("localhost", 1234, "/v1/chat/completions", "lm_studio", "chat"),
        ("vllm.internal", 8000, "/v1/chat/completions", "vllm.internal:8000", "chat"),
    ],
)
def test_registry_names_providers(host: str, port: int | None, path: str, provider: str, operation: str) -> None:
    route = Registry().resolve("POST", host, port, path)
    assert route is not None
    assert (route.provider, route.operation) == (provider, operation)


def test_registry_host_overrides_and_ignores() -> None:
    registry = Registry({"vllm.internal:8000": "vllm", "gw.local": "openai"}, frozenset({"ignored.local"}))
    assert registry.resolve("POST", "vllm.internal", 8000, "/v1/chat/completions").provider == "vllm"  # type: ignore[union-attr]
    assert registry.resolve("POST", "gw.local", 443, "/v1/embeddings").provider == "openai"  # type: ignore[union-attr]
    assert registry.resolve("POST", "ignored.local", None, "/v1/chat/completions") is None
