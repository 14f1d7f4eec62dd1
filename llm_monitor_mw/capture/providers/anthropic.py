"""Anthropic Messages API (``POST /v1/messages``), streamed and not."""

from __future__ import annotations

from typing import Any

from .base import Parsed, add, as_int, error_from

name = "anthropic"

# With these stop reasons the model asked for no tool (it stops with "tool_use" when it does).
NO_TOOL_FINISH: frozenset[str] = frozenset({"end_turn", "stop_sequence"})


def operation(method: str, path: str) -> str | None:
    """``chat`` for ``POST .../v1/messages`` (not ``count_tokens`` or batches)."""
    return "chat" if method == "POST" and path.endswith("/v1/messages") else None


def model_from_path(path: str) -> str | None:
    return None


def streams_by_default(op: str) -> bool:
    return False


def streamed_body(op: str) -> bool:
    return False


def _usage(usage: Any, parsed: Parsed) -> None:
    """Anthropic reports uncached input apart from cache reads/writes; OTel's input includes all three."""
    if not isinstance(usage, dict):
        return
    parsed.saw_usage = True
    uncached = as_int(usage.get("input_tokens"), parsed, "usage.input_tokens")
    created = as_int(usage.get("cache_creation_input_tokens"), parsed, "usage.cache_creation_input_tokens")
    read = as_int(usage.get("cache_read_input_tokens"), parsed, "usage.cache_read_input_tokens")
    if uncached is not None:
        parsed.input_tokens = add(parsed, "input_tokens", uncached, created, read)
        parsed.cache_creation_tokens = created
        parsed.cached_tokens = read
    out = as_int(usage.get("output_tokens"), parsed, "usage.output_tokens")
    if out is not None:
        parsed.output_tokens = out
    split = usage.get("cache_creation")
    if isinstance(split, dict):  # the cache writes by TTL: 1-hour writes are billed at 2x input, 5-minute at 1.25x
        for ttl in ("5m", "1h"):
            tokens = as_int(
                split.get(f"ephemeral_{ttl}_input_tokens"), parsed, f"usage.cache_creation.ephemeral_{ttl}_input_tokens"
            )
            if tokens is not None:
                setattr(parsed, f"cache_write_{ttl}_tokens", tokens)
    tier = usage.get("service_tier")
    if isinstance(tier, str) and tier:
        parsed.service_tier = tier
    parsed.total_tokens = (
        add(parsed, "total_tokens", parsed.input_tokens, parsed.output_tokens)
        if parsed.input_tokens is not None and parsed.output_tokens is not None
        else None
    )


def parse_body(op: str, body: Any, parsed: Parsed, want_text: bool) -> None:
    """Read a complete ``message`` object (or an error body)."""
    if not isinstance(body, dict) or error_from(body, parsed):
        return
    if isinstance(body.get("model"), str):
        parsed.response_model = body["model"]
    if isinstance(body.get("id"), str) and body["id"]:
        parsed.response_id = body["id"]
    _usage(body.get("usage"), parsed)
    parsed.finish_reason = body.get("stop_reason")
    content = body.get("content")
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if want_text and isinstance(block.get("text"), str):
            parsed.text_parts.append(block["text"])
        elif block.get("type") == "tool_use":  # server_tool_use blocks are tools the API ran itself
            parsed.tools.start(block.get("name"), block.get("input"))


def _block_key(event: dict[str, Any]) -> tuple[str, int] | None:
    index = event.get("index")
    return ("block", index) if isinstance(index, int) and not isinstance(index, bool) else None


def parse_event(op: str, event: Any, parsed: Parsed, want_text: bool) -> None:
    """Read one SSE event: usage arrives in ``message_start`` (input) and ``message_delta`` (output)."""
    if not isinstance(event, dict):
        return
    kind = event.get("type")
    if kind == "message_start":
        message = event.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("model"), str):
                parsed.response_model = message["model"]
            if isinstance(message.get("id"), str) and message["id"]:
                parsed.response_id = message["id"]
            _usage(message.get("usage"), parsed)
    elif kind == "message_delta":
        _usage(event.get("usage"), parsed)
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            parsed.finish_reason = delta["stop_reason"]
            # The stop reason and the output usage are the end of the information: clients such as litellm close
            # the stream here, without reading message_stop, and the call is complete all the same.
            if isinstance(event.get("usage"), dict):
                parsed.completed = True
    elif kind == "content_block_delta":
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return
        if want_text and isinstance(delta.get("text"), str):
            parsed.text_parts.append(delta["text"])
        elif delta.get("type") == "input_json_delta":
            parsed.tools.more(_block_key(event), delta.get("partial_json"))
    elif kind == "content_block_start":
        block = event.get("content_block")
        if isinstance(block, dict) and block.get("type") == "tool_use":
            # Its input starts as {} and arrives in input_json_delta pieces; a non-empty one is kept as it is.
            key = _block_key(event)
            parsed.tools.start(block.get("name"), block.get("input") or None, key)
    elif kind == "message_stop":
        parsed.completed = True
    elif kind == "error":
        error_from(event, parsed)
