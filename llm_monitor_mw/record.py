"""`CallRecord`: the one shape that flows from capture to the store."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CallRecord:
    """One HTTP attempt at an LLM API, as recorded.

    ``None`` means *unknown* (the provider did not say); zero means zero. Token counts follow the
    OpenTelemetry GenAI conventions so that sums compare across providers: ``input_tokens`` includes
    cached input, ``output_tokens`` includes reasoning, ``total_tokens = input_tokens + output_tokens``.
    """

    started_at: float
    """Start of the attempt, seconds since the Unix epoch (UTC)."""
    provider: str
    operation: str
    endpoint: str
    method: str = "POST"
    host: str = ""
    call_id: str = ""
    """Shared by every attempt (SDK retry) of one logical call."""
    attempt: int = 1
    request_model: str | None = None
    response_model: str | None = None
    status_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    streamed: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    duration_ms: float | None = None
    ttft_ms: float | None = None
    ttlt_ms: float | None = None
    output_tokens_per_s: float | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    ratelimit_remaining_requests: int | None = None
    ratelimit_remaining_tokens: int | None = None
    retry_after_s: float | None = None
    response_bytes: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    request_content: str | None = None
    response_content: str | None = None
    route: str | None = None
    """Route template of the inbound request that caused the call (``/chat/{id}``), from the middleware."""
    user: str | None = None
    """User id of the inbound request, from the middleware's resolver or ``tags(user=...)``."""
    inbound_method: str | None = None
    inbound_request_id: str | None = None
    instance: str | None = None
    """The process that recorded the call (``Monitor(instance=...)``, else host name and process group); the
    writer stamps it. ``None`` on rows written before instances were recorded."""
    trace_id: str | None = None
    """The trace the call belongs to: the inbound request's id (``inbound_request_id``) when one is being served,
    else the id of the outermost ``monitor.trace()`` block around the call; ``None`` outside both."""
    trace_name: str | None = None
    """Name of the outermost ``monitor.trace()`` block (``None`` for an inbound request's trace: it is named by its
    method and route)."""
    span_name: str | None = None
    """The names of the ``monitor.trace()`` blocks inside the trace's root that the call was made in, outermost
    first, joined by ``" / "`` (``None`` when the call was made directly in the root)."""
    tool_call_count: int | None = None
    """How many tool (function) calls the model asked for in this response; ``0`` when it asked for none,
    ``None`` when unknown (no response, an embeddings call, a stream cut before its end)."""
    tool_names: list[str] | None = None
    """The names of the tools the model asked to call, in the response's order (a name repeats if it was asked
    for twice); ``None`` when unknown."""
    tool_arguments: str | None = None
    """The tool calls' arguments as a JSON array of ``{"name", "arguments"}`` objects: content, so only recorded
    with ``capture_content=True`` (and cut at ``content_limit``)."""
    service_tier: str | None = None
    """The service tier the call was billed at (``default``, ``flex``, ``priority``, ``scale``, Anthropic's
    ``standard``/``batch``...): the response's, else the one the request asked for; ``None`` when neither says."""
    cache_write_5m_tokens: int | None = None
    """Of ``cache_creation_tokens``, those written to a 5-minute cache (Anthropic ``ephemeral_5m_input_tokens``)."""
    cache_write_1h_tokens: int | None = None
    """Of ``cache_creation_tokens``, those written to a 1-hour cache (billed at 2x input, not 1.25x)."""
    response_id: str | None = None
    """The provider's id of the response (``chatcmpl-...``, ``msg_...``, ``resp_...``): ``gen_ai.response.id``."""
    key_fingerprint: str | None = None
    """HMAC-SHA256 (hex, first 16 digits) of the API key the call was made with, under a secret kept in the
    database: tells keys apart without storing them. ``None`` when the request carried no key."""
    key_hint: str | None = None
    """The key as providers show it: its first characters up to the first ``-`` run and its last four
    (``sk-…a1b2``); never more of the key than that."""
    # New stored fields go here, at the end (the table's column order), each added by a new migration.
    trace_context: Any = field(default=None, repr=False, compare=False)
    """Opaque tracing context of the caller when the call started (set by an exporter's gate, e.g. OpenTelemetry's
    ``Context``), for listeners that parent spans under it. Never stored and left out of :meth:`to_dict`."""
    request_params: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """Generation parameters the request set (``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``,
    ``stop_sequences``, ``frequency_penalty``, ``presence_penalty``, ``choice_count``) and the output type it asked
    for (``output_type``), read on the writer thread for listeners such as the OpenTelemetry exporter. Never stored
    and left out of :meth:`to_dict`."""
    chunk_timing: tuple[int, float] | None = field(default=None, repr=False, compare=False)
    """Streams: the chunks received after the first content chunk, and the seconds from it to the last chunk the
    caller read (for ``gen_ai.client.operation.time_per_output_chunk``). Never stored."""

    @property
    def ok(self) -> bool:
        """Succeeded: a response below 400 and no error type (a note in ``error`` alone is not a failure)."""
        return self.status_code is not None and self.status_code < 400 and self.error_type is None

    @property
    def model(self) -> str | None:
        """The model that answered, else the one requested."""
        return self.response_model or self.request_model

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (plus ``model``)."""
        data = dataclasses.asdict(dataclasses.replace(self, trace_context=None, request_params=None, chunk_timing=None))
        for name in UNSTORED_FIELDS:
            del data[name]
        data["model"] = self.model
        data["ok"] = self.ok
        return data


UNSTORED_FIELDS = frozenset({"trace_context", "request_params", "chunk_timing"})
"""Fields of :class:`CallRecord` that are not columns of ``calls``."""
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CallRecord) if f.name not in UNSTORED_FIELDS)
JSON_FIELDS: tuple[str, ...] = ("tags", "tool_names")
"""Fields stored as JSON text (a dict or a list on the record; an empty one, or ``None``, is stored as NULL)."""

STORED_PROPERTIES: dict[str, tuple[type, str]] = {"model": (str, "response_model"), "ok": (int, "status_code")}
"""Properties of :class:`CallRecord` stored as columns (so SQL can filter on them): name -> (column type, the
field the column follows in the table)."""


def _column_type(annotation: Any) -> type:
    """The stored Python type of a field: ``X | None`` is ``X``; booleans are integers, dicts and lists JSON text."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    base = typing.get_origin(annotation) or annotation
    if base is bool:
        return int
    if base in (dict, list):
        return str
    if base not in (int, float, str):
        raise TypeError(f"no column type for {annotation!r}")
    return base


def stored_columns() -> dict[str, type]:
    """The columns of ``calls`` (besides ``id``) in table order: every stored field of :class:`CallRecord`, with
    each of :data:`STORED_PROPERTIES` right after the field it follows. Name -> Python type (``int``, ``float``,
    ``str``)."""
    hints = typing.get_type_hints(CallRecord)
    after: dict[str, list[str]] = {}
    for name, (_, anchor) in STORED_PROPERTIES.items():
        after.setdefault(anchor, []).append(name)
    columns: dict[str, type] = {}
    for f in dataclasses.fields(CallRecord):
        if f.name in UNSTORED_FIELDS:
            continue
        columns[f.name] = _column_type(hints[f.name])
        for name in after.get(f.name, ()):
            columns[name] = STORED_PROPERTIES[name][0]
    return columns
