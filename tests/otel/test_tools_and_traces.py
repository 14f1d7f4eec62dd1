"""Tool calls, traces and sessions on the exported spans, named as the GenAI semantic conventions name them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.otel import SCOPE
from tests.httplibs import libs_for_anthropic, libs_for_openai
from tests.otel.conftest import OTel

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

USER: Any = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]


def openai_client(monitor: Monitor, server: FakeLLMServer) -> openai.OpenAI:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def test_tool_calls_without_content(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=TOOLS, extra_headers={"x-fake-tool-calls": "2"}
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    with_tools, without = (dict(s.attributes or {}) for s in otel.spans())
    assert with_tools["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert with_tools["llm_monitor.tool_call_count"] == 2
    assert with_tools["llm_monitor.tool_names"] == ("get_weather", "get_weather")
    assert "gen_ai.output.messages" not in with_tools  # content: only with capture_content
    assert without["llm_monitor.tool_call_count"] == 0 and "llm_monitor.tool_names" not in without


def test_traces_and_sessions(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    with monitor.tags(session="conv-42"), monitor.trace("support agent") as run, monitor.trace("lookup"):
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    inside, outside = (dict(s.attributes or {}) for s in otel.spans())
    assert inside["gen_ai.conversation.id"] == "conv-42"
    assert inside["llm_monitor.trace_id"] == run.trace_id
    assert (inside["llm_monitor.trace_name"], inside["llm_monitor.span_name"]) == ("support agent", "lookup")
    assert not any(k.startswith(("llm_monitor.trace", "llm_monitor.span", "gen_ai.conversation")) for k in outside)


@pytest.fixture
def content_spans(tmp_path: Path) -> Iterator[tuple[Monitor, InMemorySpanExporter]]:
    monitor = Monitor(tmp_path / "content.db", flush_interval=0.05, capture_content=True)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monitor.enable_otel(tracer_provider=provider)
    yield monitor, spans
    monitor.close()
    provider.shutdown()


def output_messages(monitor: Monitor, spans: InMemorySpanExporter) -> list[Any]:
    assert monitor.flush(timeout=10)
    ours = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == SCOPE]
    return [json.loads(str((s.attributes or {})["gen_ai.output.messages"])) for s in ours]


def test_output_messages_carry_tool_call_parts(
    content_spans: tuple[Monitor, InMemorySpanExporter], fake_llm: FakeLLMServer
) -> None:
    monitor, spans = content_spans
    client = openai_client(monitor, fake_llm)
    client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=TOOLS)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
        pass
    http = libs_for_anthropic()[0].Client(transport=monitor.transport())
    claude = anthropic.Anthropic(base_url=fake_llm.base_url, api_key="sk-ant-test", http_client=http)
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER}]
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=USER, tools=tools) as stream:
        stream.get_final_message()
    call = {"type": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert output_messages(monitor, spans) == [
        [{"role": "assistant", "parts": [call]}],
        [{"role": "assistant", "parts": [{"type": "text", "content": "Hello from the fake LLM."}]}],
        [{"role": "assistant", "parts": [call]}],
    ]
