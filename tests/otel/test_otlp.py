"""End to end over OTLP/HTTP: the SDK's OTLP exporters post our spans and metrics to a loopback collector."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.otel import SCOPE
from tests.httplibs import libs_for_openai


class _Collector(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP protobuf posts and keeps their decoded bodies by path."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append((self.path, self.headers.get("content-type"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


def test_spans_and_metrics_reach_an_otlp_endpoint(
    collector: ThreadingHTTPServer, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    base = f"http://127.0.0.1:{collector.server_address[1]}"
    resource = Resource.create({"service.name": "otlp-test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics"), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    monitor.enable_otel(tracer_provider, meter_provider)
    try:
        http = libs_for_openai()[0].Client(transport=monitor.transport())
        client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http)
        with tracer_provider.get_tracer("app").start_as_current_span("outer") as outer:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        assert monitor.flush(timeout=10)
        assert tracer_provider.force_flush() and meter_provider.force_flush()
    finally:
        monitor.disable_otel()
        tracer_provider.shutdown()
        meter_provider.shutdown()

    traces = [ExportTraceServiceRequest.FromString(b) for p, _, b in collector.received if p == "/v1/traces"]  # type: ignore[attr-defined]
    ours = [
        span
        for request in traces
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        if scope_spans.scope.name == SCOPE
        for span in scope_spans.spans
    ]
    [span] = ours
    assert span.name == "chat gpt-4o-mini" and span.kind == ProtoSpan.SPAN_KIND_CLIENT
    assert span.parent_span_id == outer.get_span_context().span_id.to_bytes(8, "big")
    attributes = {kv.key: _value(kv.value) for kv in span.attributes}
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (11, 5)
    assert attributes["gen_ai.request.stream"] is False
    assert attributes["llm_monitor.cost_usd"] > 0
    assert span.end_time_unix_nano > span.start_time_unix_nano > 0

    metric_requests = [
        ExportMetricsServiceRequest.FromString(b) for p, _, b in collector.received if p == "/v1/metrics"
    ]  # type: ignore[attr-defined]
    metrics = {
        metric.name: metric
        for request in metric_requests
        for resource_metrics in request.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        if scope_metrics.scope.name == SCOPE
        for metric in scope_metrics.metrics
    }
    assert {name: metric.unit for name, metric in metrics.items()} == {
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.token.usage": "{token}",
        "llm_monitor.client.cost": "{USD}",
    }
    tokens = {
        _value(next(kv.value for kv in point.attributes if kv.key == "gen_ai.token.type")): point.sum
        for point in metrics["gen_ai.client.token.usage"].histogram.data_points
    }
    assert tokens == {"input": 11, "output": 5}
    assert list(metrics["gen_ai.client.token.usage"].histogram.data_points[0].explicit_bounds)[:3] == [1, 4, 16]
