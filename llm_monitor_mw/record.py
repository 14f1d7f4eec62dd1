"""`CallRecord`: the one shape that flows from capture to the store."""

from __future__ import annotations

import dataclasses
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
    route: str | None = None
    """Route template of the inbound request that caused the call (``/chat/{id}``), from the middleware."""
    user: str | None = None
    """User id of the inbound request, from the middleware's resolver or ``tags(user=...)``."""
    inbound_method: str | None = None
    inbound_request_id: str | None = None
    request_content: str | None = None
    response_content: str | None = None
    trace_context: Any = field(default=None, repr=False, compare=False)
    """Opaque tracing context of the caller when the call started (set by an exporter's gate, e.g. OpenTelemetry's
    ``Context``), for listeners that parent spans under it. Never stored and left out of :meth:`to_dict`."""

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
        data = dataclasses.asdict(dataclasses.replace(self, trace_context=None))
        del data["trace_context"]
        data["model"] = self.model
        data["ok"] = self.ok
        return data


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CallRecord) if f.name != "trace_context")
