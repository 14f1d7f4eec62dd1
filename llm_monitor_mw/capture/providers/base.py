"""What every provider family module offers, and the small shared helpers they use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..numbers import checked_sum, count
from .tools import ToolCalls


@dataclass(slots=True)
class Parsed:
    """Facts read from a response body or stream. ``None`` = not reported."""

    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    service_tier: str | None = None
    """The tier the response says it was served at (``None``: it did not say)."""
    response_id: str | None = None
    finish_reason: str | None = None
    error_type: str | None = None
    error: str | None = None
    completed: bool = False
    """The response's terminal information is in (end-of-stream marker, or final usage and stop reason)."""
    saw_usage: bool = False
    """A usage object was read (OpenAI streams: the final chunk that reports usage)."""
    notes: list[str] = field(default_factory=list)
    """Values that were rejected (``usage.prompt_tokens=1e+30 out of range; stored as NULL``)."""
    text_parts: list[str] = field(default_factory=list)
    """Response text, collected only when content capture is on."""
    tools: ToolCalls = field(default_factory=ToolCalls)
    """The tool calls the model asked for (their arguments kept only when given a budget: content capture)."""


class Family(Protocol):
    """A provider API family (one wire format): OpenAI, Anthropic, Gemini or Ollama."""

    name: str
    NO_TOOL_FINISH: frozenset[str]
    """Finish reasons that mean the model asked for no tool call (so a stream whose middle was not kept still
    tells how many it asked for: those seen in its head and tail)."""

    def operation(self, method: str, path: str) -> str | None:
        """The GenAI operation name for this request path, or ``None`` if it is not an LLM call."""

    def streams_by_default(self, operation: str) -> bool:
        """Whether a request without a ``"stream"`` flag streams (Ollama does)."""

    def streamed_body(self, operation: str) -> bool:
        """Whether a successful plain (non-SSE, non-NDJSON) response to this operation is itself a stream."""

    def parse_body(self, operation: str, body: Any, parsed: Parsed, want_text: bool) -> None:
        """Read a complete (non-streamed) JSON body into ``parsed``."""

    def parse_event(self, operation: str, event: Any, parsed: Parsed, want_text: bool) -> None:
        """Read one decoded stream event (SSE ``data`` or NDJSON line) into ``parsed``."""


def as_int(value: Any, parsed: Parsed, name: str) -> int | None:
    """A token count from a JSON number: ``None`` if absent, ``None`` plus a note on ``parsed`` if invalid.

    Valid means an int (not a bool) or an integral float, in ``[0, 2**53)``; see :mod:`..numbers`.
    """
    return count(value, name, parsed.notes)


def add(parsed: Parsed, name: str, *values: int | None) -> int | None:
    """Sum where ``None`` is unknown (unknown only if all are); ``None`` plus a note if it reaches ``2**53``."""
    return checked_sum(parsed.notes, name, *values)


def dig(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...`` through dicts, ``None`` where any step is missing."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def error_from(obj: Any, parsed: Parsed) -> bool:
    """Fill the error fields from the common ``{"error": {...}}`` / ``{"error": "..."}`` shapes."""
    err = obj.get("error") if isinstance(obj, dict) else None
    if err is None:
        return False
    if isinstance(err, dict):
        parsed.error_type = str(err.get("type") or err.get("status") or err.get("code") or "error")
        parsed.error = str(err.get("message") or err)
    else:
        parsed.error_type = "error"
        parsed.error = str(err)
    return True


def flatten_text(value: Any) -> str:
    """The text inside a message ``content``: a string, a list of parts, or ``{"text": ...}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (flatten_text(v) for v in value) if t)
    if isinstance(value, dict):
        for key in ("text", "content", "parts", "input_text"):
            if key in value:
                return flatten_text(value[key])
    return ""


def prompt_text(body: Any) -> str | None:
    """A readable prompt from any family's request body: ``role: text`` lines for messages/contents."""
    if not isinstance(body, dict):
        return None
    lines: list[str] = []
    for key in ("system", "instructions", "systemInstruction"):
        if body.get(key):
            lines.append(f"system: {flatten_text(body[key])}")
    for key in ("messages", "contents"):
        for message in body.get(key) or ():
            if isinstance(message, dict):
                lines.append(f"{message.get('role', 'user')}: {flatten_text(message.get('content', message))}")
    for key in ("input", "prompt"):
        if key in body:
            lines.append(flatten_text(body[key]))
    return "\n".join(lines) if lines else None
