"""OpenTelemetry export: each captured call as a GenAI client span, plus the GenAI client metrics.

Follows the OpenTelemetry GenAI semantic conventions in their current form (``gen_ai.provider.name``, which
replaced ``gen_ai.system`` in semantic-conventions v1.37; the client metrics ``gen_ai.client.token.usage``,
``gen_ai.client.operation.duration``, ``gen_ai.client.operation.time_to_first_chunk`` and
``gen_ai.client.operation.time_per_output_chunk`` with their advised bucket boundaries; the request's generation
parameters, read from its body on the writer thread by :mod:`llm_monitor_mw.capture.request_params`). Our own
facts (cost, attribution, tags, ids) go under the ``llm_monitor.`` prefix.

Nothing is added to the caller's path but one gate that keeps a reference to the caller's current OpenTelemetry
``Context`` (a context-variable read); spans and metric points are built later on the monitor's writer thread,
with the call's real start and end times, as a child of the span that was current when the request was made.

Install with ``pip install "llm-monitor-mw[otel]"``; importing :mod:`llm_monitor_mw` alone never imports
OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from types import ModuleType
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:
    raise ImportError(
        'llm_monitor_mw\'s OpenTelemetry export needs the OpenTelemetry API and SDK: pip install "llm-monitor-mw[otel]"'
    ) from exc

from ._version import __version__
from .capture.providers import FAMILIES, PROVIDER_BY_HOST, PROVIDER_BY_HOST_SUFFIX, PROVIDER_BY_PORT
from .record import CallRecord

if TYPE_CHECKING:
    from .capture.pending import PendingCall
    from .hooks import Hooks

__all__ = [
    "COST_METRIC",
    "DURATION_BUCKETS",
    "DURATION_METRIC",
    "MAX_CHUNK_OBSERVATIONS",
    "PREFIX",
    "SCOPE",
    "TOKEN_BUCKETS",
    "TOKEN_METRIC",
    "TPOC_METRIC",
    "TTFC_METRIC",
    "OTelExporter",
    "output_messages",
    "provider_name",
    "server_port",
]

logger = logging.getLogger("llm_monitor_mw")

SCOPE = "llm_monitor_mw"
"""Instrumentation scope name of the tracer and the meter."""
PREFIX = "llm_monitor."
"""Prefix of the attributes and metrics that are ours rather than the semantic conventions'."""

DURATION_METRIC = "gen_ai.client.operation.duration"
TOKEN_METRIC = "gen_ai.client.token.usage"  # noqa: S105 - a metric name, not a secret
TTFC_METRIC = "gen_ai.client.operation.time_to_first_chunk"
TPOC_METRIC = "gen_ai.client.operation.time_per_output_chunk"
COST_METRIC = "llm_monitor.client.cost"

# The explicit bucket boundaries the GenAI semantic conventions advise.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""Seconds; for ``gen_ai.client.operation.duration``, ``…time_to_first_chunk`` and ``…time_per_output_chunk``."""
TOKEN_BUCKETS: tuple[int, ...] = tuple(4**i for i in range(14))
"""1, 4, 16 … 67108864 tokens; for ``gen_ai.client.token.usage``."""

_MAX_TEXT = 1024  # longest error text put on a span
MAX_CHUNK_OBSERVATIONS = 4096
"""Most ``gen_ai.client.operation.time_per_output_chunk`` observations made for one call (each costs the SDK a few
microseconds on the writer thread); a longer stream records this many, so its count and sum are then too low."""

# Request parameters (capture/request_params.py names) -> span attributes.
_REQUEST_ATTRIBUTES = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("seed", "gen_ai.request.seed"),
    ("stop_sequences", "gen_ai.request.stop_sequences"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("output_type", "gen_ai.output.type"),
)

# Provider names (gen_ai.provider.name) for a wire format spoken by a host we have no name for.
_FAMILY_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gen_ai", "ollama": "ollama"}


@functools.lru_cache(maxsize=1024)
def _family(method: str, endpoint: str) -> ModuleType | None:
    """The wire format of a request path, decided as the capture registry decides it."""
    for family in FAMILIES:
        if family.operation(method, endpoint) is not None:
            return family
    return None


def provider_name(record: CallRecord) -> str:
    """``gen_ai.provider.name`` for a record.

    A provider the capture side named (a known host, or a name given with ``Monitor(hosts=...)``) keeps its name.
    A host it could not name (recorded as ``host`` or ``host:port``) gets the name of the API it speaks, as the
    conventions advise ("the instrumentation's best knowledge"): ``openai`` for OpenAI-compatible servers
    (vLLM, LiteLLM, …), ``anthropic``, ``gcp.gen_ai`` for the Gemini API, ``ollama``.
    """
    provider, host = record.provider, record.host
    if provider != host and not provider.startswith(f"{host}:"):
        return provider
    family = _family(record.method, record.endpoint)
    if family is None:
        return provider
    return _FAMILY_PROVIDER.get(family.name, family.name)


def server_port(record: CallRecord) -> int | None:
    """``server.port`` as far as the record tells it, else ``None``.

    Known from an unnamed ``host:port`` provider, from the well-known provider hosts (HTTPS, 443) and from the
    local servers recognised by their default port (Ollama 11434, LM Studio 1234).
    """
    provider, host = record.provider, record.host
    if provider.startswith(f"{host}:"):
        tail = provider[len(host) + 1 :]
        if tail.isdigit():
            return int(tail)
    if host in PROVIDER_BY_HOST or any(host.endswith(suffix) for suffix, _ in PROVIDER_BY_HOST_SUFFIX):
        return 443
    for port, name in PROVIDER_BY_PORT.items():
        if provider == name:
            return port
    return None


def output_messages(record: CallRecord) -> str | None:
    """``gen_ai.output.messages`` as JSON text (span attributes cannot be structured), from the captured content.

    One assistant message (the first choice, the one recorded) whose parts follow the conventions' output
    messages schema: a ``text`` part with the response text, then a ``tool_call`` part per tool call with its
    ``name`` and ``arguments`` (the JSON value when its text parses, else the text as kept). ``None`` without
    content capture (the conventions leave content out unless the user opts in).
    """
    parts: list[dict[str, Any]] = []
    if record.response_content:
        parts.append({"type": "text", "content": record.response_content})
    if record.tool_arguments:
        try:
            calls = json.loads(record.tool_arguments)
        except ValueError:
            calls = []
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            arguments = call.get("arguments")
            if isinstance(arguments, str):
                with contextlib.suppress(ValueError):  # cut at content_limit: kept as the text it is
                    arguments = json.loads(arguments)
            parts.append({"type": "tool_call", "name": str(call.get("name") or "?"), "arguments": arguments})
    if not parts:
        return None
    return json.dumps([{"role": "assistant", "parts": parts}], ensure_ascii=False)


def _request_attributes(record: CallRecord, attributes: dict[str, Any]) -> None:
    """The generation parameters the request set (validated when read), as the conventions' span attributes."""
    params = record.request_params
    if not params:
        return
    for name, key in _REQUEST_ATTRIBUTES:
        value = params.get(name)
        if value is not None:
            attributes[key] = list(value) if isinstance(value, list) else value
    count = params.get("choice_count")
    if count is not None and count != 1:  # the conventions: "if available, in the request, and !=1"
        attributes["gen_ai.request.choice.count"] = count


def _capture_context(pending: PendingCall) -> None:
    """Gate run on the caller's thread before the request is sent: remember the caller's OpenTelemetry context."""
    pending.trace_context = otel_context.get_current()


class OTelExporter:
    """Exports the calls a :class:`~llm_monitor_mw.Monitor` captures to OpenTelemetry; attached on creation.

    Usually made with :meth:`Monitor.enable_otel` and undone with :meth:`Monitor.disable_otel`.

    Args:
        hooks: the monitor's hooks (``monitor.hooks``): a gate keeps the caller's context, a listener exports.
        tracer_provider: where spans go (default: the global tracer provider).
        meter_provider: where metrics go (default: the global meter provider).

    Per call (one HTTP attempt; SDK retries are separate spans sharing ``llm_monitor.call_id``), one span named
    ``"{gen_ai.operation.name} {gen_ai.request.model}"`` of kind ``CLIENT``, and these instruments:

    - ``gen_ai.client.operation.duration`` (histogram, ``s``), every call, with ``error.type`` on failures;
    - ``gen_ai.client.token.usage`` (histogram, ``{token}``, ``gen_ai.token.type`` = ``input``/``output``), for
      successful calls whose usage the provider reported;
    - ``gen_ai.client.operation.time_to_first_chunk`` (histogram, ``s``), streamed calls that received content;
    - ``gen_ai.client.operation.time_per_output_chunk`` (histogram, ``s``), streamed calls: one observation per
      chunk received after the first content chunk, each the call's mean time between chunks (the transport
      counts chunks but keeps no per-chunk times), at most :data:`MAX_CHUNK_OBSERVATIONS` per call;
    - ``llm_monitor.client.cost`` (counter, ``{USD}``), calls whose cost is known.

    Metric attributes are the conventions' low-cardinality set: ``gen_ai.operation.name``,
    ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``, ``server.address``,
    ``server.port`` (and ``error.type``, ``gen_ai.token.type`` where they apply). Route, user and tags go on spans
    only.

    Spans also carry ``gen_ai.response.finish_reasons`` as the provider said it (``tool_calls``, ``tool_use``…),
    ``gen_ai.response.id``, ``gen_ai.conversation.id`` from the ``session`` tag, the request's generation
    parameters (``gen_ai.request.max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``,
    ``stop_sequences``, ``frequency_penalty``, ``presence_penalty``, ``choice.count`` when not 1) and
    ``gen_ai.output.type`` when the request set them, and, with ``capture_content=True``,
    ``gen_ai.output.messages`` (JSON text: the response text and one ``tool_call`` part per tool call). The
    conventions name no span attribute for the tool names a chat call asked for, nor for our traces: those are
    ``llm_monitor.tool_call_count``, ``llm_monitor.tool_names``, ``llm_monitor.trace_id``,
    ``llm_monitor.trace_name`` and ``llm_monitor.span_name``.
    """

    def __init__(
        self,
        hooks: Hooks,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.hooks = hooks
        self._listener = self._on_record  # one bound method: the hooks remove a listener by identity
        self.errors = 0
        """Records that could not be exported (logged; also counted in ``monitor.stats()["internal_errors"]``)."""
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        self.tracer = tracer_provider.get_tracer(SCOPE, __version__)
        meter = meter_provider.get_meter(SCOPE, __version__)
        self.duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            TOKEN_METRIC,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            TTFC_METRIC,
            unit="s",
            description="Time to receive the first chunk, measured from when the client issues the generation "
            "request to when the first chunk is received in the response stream.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_per_output_chunk = meter.create_histogram(
            TPOC_METRIC,
            unit="s",
            description="Time per output chunk, recorded for each chunk received after the first one, measured as "
            "the time elapsed from the end of the previous chunk to the end of the current chunk.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(
            COST_METRIC, unit="{USD}", description="Cost of LLM calls in US dollars, at the monitor's prices."
        )
        self._attached = False
        self.attach()

    def attach(self) -> None:
        """Start exporting (done by the constructor; a no-op when attached)."""
        if self._attached:
            return
        # First, so that the context is kept even for a call another gate refuses.
        self.hooks.add_gate(_capture_context, first=True)
        self.hooks.add_listener(self._listener)
        self._attached = True

    def close(self) -> None:
        """Stop exporting. Calls still queued for the writer are not exported (``monitor.flush()`` first if they
        should be). The providers are left as they are: shutting them down is their owner's job."""
        if not self._attached:
            return
        self.hooks.remove_gate(_capture_context)
        self.hooks.remove_listener(self._listener)
        self._attached = False

    def _on_record(self, record: CallRecord) -> None:
        """The monitor's listener (writer thread): export, and never raise into the writer."""
        try:
            self.export(record)
        except Exception as exc:
            self.errors += 1
            self.hooks.count_error(exc)
            if self.errors == 1:
                logger.exception("llm_monitor_mw: OpenTelemetry export failed (further failures logged at DEBUG)")
            else:
                logger.debug("llm_monitor_mw: OpenTelemetry export failed: %r", exc)

    def export(self, record: CallRecord) -> None:
        """Emit the span and the metric points of one record."""
        provider = provider_name(record)
        port = server_port(record)
        failed = not record.ok
        error_type = (record.error_type or "_OTHER") if failed else None

        common: dict[str, Any] = {"gen_ai.operation.name": record.operation, "gen_ai.provider.name": provider}
        if record.request_model:
            common["gen_ai.request.model"] = record.request_model
        if record.response_model:
            common["gen_ai.response.model"] = record.response_model
        if record.host:
            common["server.address"] = record.host
            if port is not None:
                common["server.port"] = port

        self._span(record, common, error_type)

        duration_s = (record.duration_ms or 0.0) / 1000.0
        self.duration.record(duration_s, common if error_type is None else {**common, "error.type": error_type})
        if not failed:
            for token_type, count in (("input", record.input_tokens), ("output", record.output_tokens)):
                if count is not None:
                    self.token_usage.record(count, {**common, "gen_ai.token.type": token_type})
        if record.streamed and record.ttft_ms is not None:
            self.time_to_first_chunk.record(record.ttft_ms / 1000.0, common)
            self._chunk_times(record, common)
        if record.cost_usd is not None:
            self.cost.add(record.cost_usd, common)

    def _chunk_times(self, record: CallRecord, common: dict[str, Any]) -> None:
        """``gen_ai.client.operation.time_per_output_chunk``: the chunks after the first content chunk share the
        time from it to the last one (count and sum as if timed one by one; the spread within a call is lost).

        The capture side sets the record's ``chunk_timing`` for streams."""
        if record.chunk_timing is None:
            return
        chunks, seconds = record.chunk_timing
        if chunks < 1:
            return
        mean_s = seconds / chunks
        record_point = self.time_per_output_chunk.record
        for _ in range(min(chunks, MAX_CHUNK_OBSERVATIONS)):
            record_point(mean_s, common)

    def _span(self, record: CallRecord, common: dict[str, Any], error_type: str | None) -> None:
        attributes = dict(common)
        attributes["gen_ai.request.stream"] = record.streamed
        _request_attributes(record, attributes)
        if record.response_id:
            attributes["gen_ai.response.id"] = record.response_id
        if record.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [record.finish_reason]
        for key, value in (
            ("gen_ai.usage.input_tokens", record.input_tokens),
            ("gen_ai.usage.output_tokens", record.output_tokens),
            ("gen_ai.usage.cache_read.input_tokens", record.cached_tokens),
            ("gen_ai.usage.cache_creation.input_tokens", record.cache_creation_tokens),
            ("gen_ai.usage.reasoning.output_tokens", record.reasoning_tokens),
            ("http.response.status_code", record.status_code),
        ):
            if value is not None:
                attributes[key] = value
        if record.streamed and record.ttft_ms is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = record.ttft_ms / 1000.0
        if error_type is not None:
            attributes["error.type"] = error_type
        session = record.tags.get("session")
        if session:
            attributes["gen_ai.conversation.id"] = session
        output = output_messages(record)
        if output is not None:
            attributes["gen_ai.output.messages"] = output
        ours = {
            "cost_usd": record.cost_usd,
            "call_id": record.call_id or None,
            "attempt": record.attempt,
            "endpoint": record.endpoint,
            "request_id": record.request_id,
            "route": record.route,
            "user": record.user,
            "inbound_request_id": record.inbound_request_id,
            "trace_id": record.trace_id,
            "trace_name": record.trace_name,
            "span_name": record.span_name,
            "tool_call_count": record.tool_call_count,
            "tool_names": record.tool_names or None,
            "error": record.error[:_MAX_TEXT] if record.error else None,
        }
        for key, value in ours.items():
            if value is not None:
                attributes[PREFIX + key] = value
        for key, value in record.tags.items():
            attributes[f"{PREFIX}tags.{key}"] = value

        name = f"{record.operation} {record.request_model}" if record.request_model else record.operation
        start_ns = int(record.started_at * 1e9)
        end_ns = start_ns + int((record.duration_ms or 0.0) * 1e6)
        span = self.tracer.start_span(
            name, context=record.trace_context, kind=SpanKind.CLIENT, attributes=attributes, start_time=start_ns
        )
        if record.streamed and record.ttft_ms is not None:
            span.add_event(f"{PREFIX}first_chunk", timestamp=start_ns + int(record.ttft_ms * 1e6))
        if error_type is not None:
            span.set_status(Status(StatusCode.ERROR, (record.error or error_type)[:_MAX_TEXT]))
        span.end(end_time=end_ns)
