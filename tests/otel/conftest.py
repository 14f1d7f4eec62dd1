"""OpenTelemetry SDK fixtures: in-memory span exporter and metric reader, wired into a fresh Monitor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_monitor_mw import Monitor
from llm_monitor_mw.otel import SCOPE, OTelExporter


@dataclass
class OTel:
    """What a test reads back: spans ended so far and metric points collected on demand."""

    monitor: Monitor
    exporter: OTelExporter
    tracer_provider: TracerProvider
    spans_out: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        """Our spans (scope ``llm_monitor_mw``), in the order they ended, after a flush of the monitor."""
        assert self.monitor.flush(timeout=10), "writer did not flush in time"
        return [s for s in self.spans_out.get_finished_spans() if s.instrumentation_scope.name == SCOPE]

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metric_data(self) -> dict[str, Any]:
        """``{name: Metric}`` of our meter's instruments, after a flush of the monitor."""
        assert self.monitor.flush(timeout=10), "writer did not flush in time"
        data = self.reader.get_metrics_data()
        out: dict[str, Any] = {}
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name == SCOPE:
                    out.update((metric.name, metric) for metric in scope_metrics.metrics)
        return out

    def metrics(self) -> dict[str, tuple[str, list[tuple[dict[str, Any], Any]]]]:
        """``{name: (unit, [(attributes, data point), ...])}`` of our meter's instruments."""
        return {
            name: (metric.unit or "", [(dict(p.attributes or {}), p) for p in metric.data.data_points])
            for name, metric in self.metric_data().items()
        }


@pytest.fixture
def otel(monitor: Monitor) -> Iterator[OTel]:
    spans_out = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = monitor.enable_otel(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield OTel(monitor, exporter, tracer_provider, spans_out, reader)
    monitor.disable_otel()
    tracer_provider.shutdown()
    meter_provider.shutdown()
