"""Spans and metrics exported for real SDK calls (openai, anthropic) against the fake LLM server."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.transport import CallRefused
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.otel import COST_METRIC, DURATION_METRIC, TOKEN_METRIC
from tests.conftest import only_record, records
from tests.httplibs import libs_for_anthropic, libs_for_openai
from tests.otel.conftest import OTel

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
OPENAI_LIB = libs_for_openai()[0]
ANTHROPIC_LIB = libs_for_anthropic()[0]
CLAUDE = "claude-sonnet-4-5"
# The boundaries the GenAI semantic conventions advise, spelled out here rather than imported.
SECONDS_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
NS_SLACK = 1_000  # the record keeps its start as float seconds: sub-microsecond rounding


def openai_client(monitor: Monitor, server: FakeLLMServer, **kw: Any) -> openai.OpenAI:
    http = OPENAI_LIB.Client(transport=monitor.transport())
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http, **kw)


def async_openai_client(monitor: Monitor, server: FakeLLMServer, **kw: Any) -> openai.AsyncOpenAI:
    http = OPENAI_LIB.AsyncClient(transport=monitor.async_transport())
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http, **kw)


def anthropic_client(monitor: Monitor, server: FakeLLMServer) -> anthropic.Anthropic:
    http = ANTHROPIC_LIB.Client(transport=monitor.transport())
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-test", http_client=http)


def metric_base(server: FakeLLMServer, provider: str, model: str, response_model: str | None = None) -> dict:
    """The low-cardinality attributes every metric point of a call carries."""
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }
    if response_model is not None:
        base["gen_ai.response.model"] = response_model
    return base


def assert_timing(span: ReadableSpan, row: dict[str, Any], before: int, after: int) -> None:
    """The span carries the call's real wall-clock start and its measured duration."""
    assert span.start_time is not None and span.end_time is not None
    assert before - NS_SLACK <= span.start_time < span.end_time <= after + NS_SLACK
    assert span.end_time - span.start_time == pytest.approx(row["duration_ms"] * 1e6, abs=NS_SLACK)


# ---- spans -------------------------------------------------------------------------------------------------------


def test_chat_span(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    before = time.time_ns()
    completion = openai_client(monitor, fake_llm).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    after = time.time_ns()
    span, row = otel.span(), only_record(monitor)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.parent is None  # nothing was current: a root span
    assert dict(span.attributes or {}) == {
        **metric_base(fake_llm, "openai", "gpt-4o-mini", "gpt-4o-mini"),
        "gen_ai.request.stream": False,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.id": completion.id,
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 2,
        "gen_ai.usage.reasoning.output_tokens": 1,
        "http.response.status_code": 200,
        "llm_monitor.cost_usd": row["cost_usd"],
        "llm_monitor.call_id": row["call_id"],
        "llm_monitor.attempt": 1,
        "llm_monitor.endpoint": "/v1/chat/completions",
        "llm_monitor.request_id": row["request_id"],
        "llm_monitor.tool_call_count": 0,  # a complete answer that asked for no tool
    }
    assert row["cost_usd"] > 0 and row["request_id"] and completion.id.startswith("chatcmpl-")
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events
    assert_timing(span, row, before, after)


def test_streamed_chat_span_has_time_to_first_chunk(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    before = time.time_ns()
    stream = openai_client(monitor, fake_llm).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-chunk-delay": "0.02"},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from the fake LLM."
    after = time.time_ns()
    span, row = otel.span(), only_record(monitor)
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-4o-mini"
    assert attributes["gen_ai.request.stream"] is True
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (11, 5)
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    ttft_s = attributes["gen_ai.response.time_to_first_chunk"]
    assert ttft_s == pytest.approx(row["ttft_ms"] / 1000) and ttft_s >= 0.015  # one chunk delay at least
    assert_timing(span, row, before, after)
    [event] = span.events
    assert event.name == "llm_monitor.first_chunk"
    assert event.timestamp == pytest.approx(span.start_time + row["ttft_ms"] * 1e6, abs=NS_SLACK)  # type: ignore[operator]
    assert span.start_time < event.timestamp < span.end_time  # type: ignore[operator]


def test_http_error_span(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-status": "400"})
    span, row = otel.span(), only_record(monitor)
    attributes = dict(span.attributes or {})
    assert row["error_type"] and row["error"]
    assert attributes["error.type"] == row["error_type"]
    assert attributes["http.response.status_code"] == 400
    assert attributes["llm_monitor.error"] == row["error"]
    assert "gen_ai.usage.input_tokens" not in attributes
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == row["error"]
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT


def test_connection_error_span(otel: OTel, monitor: Monitor) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = OPENAI_LIB.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", http_client=http, max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attributes = dict(otel.span().attributes or {})
    assert attributes["error.type"] == "ConnectError"
    assert "http.response.status_code" not in attributes
    assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
    assert otel.span().status.status_code is StatusCode.ERROR


def test_sdk_retries_are_one_span_per_attempt(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm, max_retries=2)
    headers = {"x-fake-status": "429", "x-fake-fail-times": "1", "x-fake-key": "otel-retry"}
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as outer:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    first, second = otel.spans()
    rows = records(monitor)
    assert [s.attributes["llm_monitor.attempt"] for s in (first, second)] == [1, 2]  # type: ignore[index]
    assert first.attributes["llm_monitor.call_id"] == second.attributes["llm_monitor.call_id"] == rows[0]["call_id"]  # type: ignore[index]
    assert first.status.status_code is StatusCode.ERROR and first.attributes["error.type"] == rows[0]["error_type"]  # type: ignore[index]
    assert first.attributes["http.response.status_code"] == 429  # type: ignore[index]
    assert second.status.status_code is StatusCode.UNSET and "error.type" not in second.attributes  # type: ignore[operator]
    assert first.end_time <= second.start_time  # type: ignore[operator]
    assert {s.parent.span_id for s in (first, second)} == {outer.get_span_context().span_id}  # type: ignore[union-attr]


def test_attribution_and_tags_on_span_only(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with monitor.tags(feature="summarize", user="alice"):
        openai_client(monitor, fake_llm).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attributes = dict(otel.span().attributes or {})
    assert attributes["llm_monitor.user"] == "alice"
    assert attributes["llm_monitor.tags.feature"] == "summarize"
    assert attributes["llm_monitor.tags.user"] == "alice"
    for _unit, points in otel.metrics().values():
        for point_attributes, _ in points:
            assert not any(key.startswith("llm_monitor.") for key in point_attributes)  # no high cardinality


def test_anthropic_spans(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = anthropic_client(monitor, fake_llm)
    message = client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)
    with client.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text()
    plain, streamed = otel.spans()
    rows = records(monitor)
    for span, row in zip((plain, streamed), rows, strict=True):
        attributes = dict(span.attributes or {})
        assert span.name == f"chat {CLAUDE}" and span.kind is SpanKind.CLIENT
        assert attributes["gen_ai.provider.name"] == "anthropic"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == CLAUDE
        assert attributes["gen_ai.response.model"] == row["response_model"]
        assert attributes["gen_ai.response.finish_reasons"] == (message.stop_reason,)
        assert attributes["gen_ai.usage.input_tokens"] == row["input_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == row["output_tokens"]
        assert attributes.get("gen_ai.usage.cache_read.input_tokens") == row["cached_tokens"]
        assert attributes.get("gen_ai.usage.cache_creation.input_tokens") == row["cache_creation_tokens"]
        assert attributes["llm_monitor.endpoint"] == "/v1/messages"
        assert attributes["llm_monitor.cost_usd"] == row["cost_usd"] > 0
    assert message.usage.input_tokens <= plain.attributes["gen_ai.usage.input_tokens"]  # type: ignore[index, operator]
    assert plain.attributes["gen_ai.request.stream"] is False  # type: ignore[index]
    assert streamed.attributes["gen_ai.request.stream"] is True  # type: ignore[index]
    assert streamed.attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(rows[1]["ttft_ms"] / 1000)  # type: ignore[index]


# ---- parenting ---------------------------------------------------------------------------------------------------


def test_span_is_child_of_the_callers_current_span(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("POST /chat") as outer:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # outside: a root span
    inside, outside = otel.spans()
    outer_context = outer.get_span_context()
    assert inside.parent is not None and inside.parent.span_id == outer_context.span_id
    assert inside.context.trace_id == outer_context.trace_id  # type: ignore[union-attr]
    assert outside.parent is None and outside.context.trace_id != outer_context.trace_id  # type: ignore[union-attr]
    assert outer.start_time < inside.start_time < inside.end_time < outer.end_time  # type: ignore[attr-defined, operator]


def test_concurrent_async_calls_each_join_their_own_trace(
    otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    parents: dict[str, int] = {}

    async def handle(client: openai.AsyncOpenAI, name: str) -> None:
        with tracer.start_as_current_span(name) as outer:
            parents[name] = outer.get_span_context().span_id
            await client.chat.completions.create(
                model=f"model-{name}", messages=MESSAGES, extra_headers={"x-fake-chunk-delay": "0.02"}
            )

    async def main() -> None:
        async with async_openai_client(monitor, fake_llm) as client:
            await asyncio.gather(*(handle(client, name) for name in ("a", "b", "c")))

    asyncio.run(main())
    spans = otel.spans()
    assert sorted(s.name for s in spans) == ["chat model-a", "chat model-b", "chat model-c"]
    for span in spans:
        name = span.name.rsplit("-", 1)[1]
        assert span.parent is not None and span.parent.span_id == parents[name], span.name


def test_refused_call_still_joins_the_callers_trace(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    def refuse(pending: Any) -> None:
        raise CallRefused("daily budget exceeded")

    # A refusing gate (e.g. a hard budget) installed before OTel export is enabled.
    monitor.disable_otel()
    monitor.hooks.add_gate(refuse)
    monitor.enable_otel(tracer_provider=otel.tracer_provider)
    sent_before = len(fake_llm.requests_seen)
    try:
        tracer = otel.tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("handler") as outer, pytest.raises((CallRefused, openai.APIConnectionError)):
            openai_client(monitor, fake_llm, max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
    finally:
        monitor.hooks.remove_gate(refuse)
    span = otel.span()
    assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
    assert span.attributes["error.type"] == "CallRefused"  # type: ignore[index]
    assert span.status.status_code is StatusCode.ERROR and "budget" in (span.status.description or "")
    assert len(fake_llm.requests_seen) == sent_before  # refused before it left the process


def test_fastapi_server_span_is_the_parent(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    """A server span opened by ASGI middleware (as opentelemetry-instrumentation-asgi does) parents the call,
    from an async endpoint and from a sync one that FastAPI runs in its thread pool; the route is recorded."""
    from fastapi import FastAPI

    tracer = otel.tracer_provider.get_tracer("server")
    server_spans: dict[str, Any] = {}

    class ServerSpanMiddleware:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            with tracer.start_as_current_span(f"GET {scope['path']}", kind=SpanKind.SERVER) as span:
                server_spans[scope["path"]] = span.get_span_context()
                await self.app(scope, receive, send)

    app = FastAPI()
    aclient = async_openai_client(monitor, fake_llm)
    sclient = openai_client(monitor, fake_llm)

    @app.get("/async/{chat_id}")
    async def async_chat(chat_id: str) -> dict[str, str | None]:
        reply = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return {"reply": reply.choices[0].message.content}

    @app.get("/sync/{chat_id}")
    def sync_chat(chat_id: str) -> dict[str, str | None]:
        reply = sclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return {"reply": reply.choices[0].message.content}

    app.add_middleware(ServerSpanMiddleware)
    app.add_middleware(monitor.asgi_middleware)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for path in ("/async/1", "/sync/2"):
                assert (await client.get(path)).json() == {"reply": "Hello from the fake LLM."}

    asyncio.run(main())
    by_route = {s.attributes["llm_monitor.route"]: s for s in otel.spans()}  # type: ignore[index]
    assert set(by_route) == {"/async/{chat_id}", "/sync/{chat_id}"}
    for route, path in (("/async/{chat_id}", "/async/1"), ("/sync/{chat_id}", "/sync/2")):
        span = by_route[route]
        assert span.parent is not None and span.parent.span_id == server_spans[path].span_id, route
        assert span.context.trace_id == server_spans[path].trace_id  # type: ignore[union-attr]
        assert span.attributes["llm_monitor.inbound_request_id"]  # type: ignore[index]


# ---- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_of_a_call(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    openai_client(monitor, fake_llm).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    row = only_record(monitor)
    metrics = otel.metrics()
    base = metric_base(fake_llm, "openai", "gpt-4o-mini", "gpt-4o-mini")
    assert set(metrics) == {DURATION_METRIC, TOKEN_METRIC, COST_METRIC}  # no time to first chunk: not streamed

    unit, [(attributes, point)] = metrics["gen_ai.client.operation.duration"]
    assert (unit, attributes, point.count) == ("s", base, 1)
    assert point.sum == pytest.approx(row["duration_ms"] / 1000)
    assert list(point.explicit_bounds) == SECONDS_BOUNDS

    unit, points = metrics["gen_ai.client.token.usage"]
    assert unit == "{token}"
    by_type = {a["gen_ai.token.type"]: (a, p) for a, p in points}
    assert set(by_type) == {"input", "output"}
    for token_type, value in (("input", 11), ("output", 5)):
        attributes, point = by_type[token_type]
        assert attributes == {**base, "gen_ai.token.type": token_type}
        assert (point.count, point.sum) == (1, value)
        assert list(point.explicit_bounds) == TOKEN_BOUNDS

    unit, [(attributes, point)] = metrics["llm_monitor.client.cost"]
    assert (unit, attributes) == ("{USD}", base)
    assert point.value == pytest.approx(row["cost_usd"])
    assert otel.metric_data()["llm_monitor.client.cost"].data.is_monotonic


def test_metrics_of_streamed_and_failed_calls(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-chunk-delay": "0.02"},
    )
    for _ in stream:
        pass
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-status": "500"})
    streamed, failed = records(monitor)
    metrics = otel.metrics()
    base = metric_base(fake_llm, "openai", "gpt-4o-mini", "gpt-4o-mini")

    unit, [(attributes, point)] = metrics["gen_ai.client.operation.time_to_first_chunk"]
    assert (unit, attributes, point.count) == ("s", base, 1)  # the failed call was not streamed
    assert point.sum == pytest.approx(streamed["ttft_ms"] / 1000) and point.sum >= 0.015
    assert list(point.explicit_bounds) == SECONDS_BOUNDS

    _, points = metrics["gen_ai.client.operation.duration"]
    by_error = {a.get("error.type"): (a, p) for a, p in points}
    assert set(by_error) == {None, failed["error_type"]}
    failed_attributes, failed_point = by_error[failed["error_type"]]
    failed_base = metric_base(fake_llm, "openai", "gpt-4o-mini", failed["response_model"])
    assert failed_attributes == {**failed_base, "error.type": failed["error_type"]}
    assert failed_point.count == 1 and failed_point.sum == pytest.approx(failed["duration_ms"] / 1000)
    assert by_error[None][1].sum == pytest.approx(streamed["duration_ms"] / 1000)

    _, points = metrics["gen_ai.client.token.usage"]  # the failed call reports no tokens
    assert sorted((a["gen_ai.token.type"], p.count, p.sum) for a, p in points) == [("input", 1, 11), ("output", 1, 5)]
    assert all("error.type" not in a for a, _ in points)


# ---- lifecycle ---------------------------------------------------------------------------------------------------


def test_disable_and_reenable(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = openai_client(monitor, fake_llm)
    gates_before = monitor.hooks.gates
    monitor.disable_otel()
    assert len(monitor.hooks.gates) == len(gates_before) - 1
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert otel.spans() == [] and len(records(monitor)) == 1
    monitor.disable_otel()  # a second time is a no-op

    again = monitor.enable_otel(tracer_provider=otel.tracer_provider)
    replaced = monitor.enable_otel(tracer_provider=otel.tracer_provider)  # replaces, never doubles
    assert replaced is not again and monitor.hooks.gates == gates_before
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(otel.spans()) == 1


def test_a_failing_export_never_reaches_the_writer(
    otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenTracer:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("exporter exploded")

    otel.exporter.tracer = BrokenTracer()  # type: ignore[assignment]
    client = openai_client(monitor, fake_llm)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(records(monitor)) == 2  # both stored
    assert otel.exporter.errors == 2 and monitor.stats()["internal_errors"] == 2
    assert [r.levelname for r in caplog.records if "OpenTelemetry export failed" in r.getMessage()] == ["ERROR"]
