"""Ollama's native API: ``/api/chat``, ``/api/generate`` (NDJSON streams by default), ``/api/embed``."""

from __future__ import annotations

from typing import Any

from .base import Parsed, add, as_int, dig, error_from

name = "ollama"

# Ollama ends with "stop" whether or not it asked for tool calls.
NO_TOOL_FINISH: frozenset[str] = frozenset()

_PATHS = {
    "/api/chat": "chat",
    "/api/generate": "text_completion",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
}


def operation(method: str, path: str) -> str | None:
    return _PATHS.get(path) if method == "POST" else None


def model_from_path(path: str) -> str | None:
    return None


def streams_by_default(op: str) -> bool:
    return op in ("chat", "text_completion")


def streamed_body(op: str) -> bool:
    return False


def _read(obj: dict[str, Any], op: str, parsed: Parsed, want_text: bool) -> None:
    if isinstance(obj.get("model"), str):
        parsed.response_model = obj["model"]
    if want_text:
        text = dig(obj, "message", "content") if op == "chat" else obj.get("response")
        if isinstance(text, str):
            parsed.text_parts.append(text)
    calls = dig(obj, "message", "tool_calls") if op == "chat" else None
    for call in calls if isinstance(calls, list) else ():  # each call whole, also when streamed
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            parsed.tools.start(fn.get("name"), fn.get("arguments"))
    if op == "embeddings":
        parsed.saw_usage = True
        parsed.input_tokens = as_int(obj.get("prompt_eval_count"), parsed, "prompt_eval_count")
        parsed.output_tokens = 0 if parsed.input_tokens is not None else None
        parsed.total_tokens = parsed.input_tokens
        parsed.completed = True
        return
    if obj.get("done") is True:
        parsed.completed = True
        parsed.finish_reason = obj.get("done_reason") or "stop"
        # Ollama omits prompt_eval_count when the whole prompt came from its cache: unknown, not zero.
        parsed.saw_usage = True
        parsed.input_tokens = as_int(obj.get("prompt_eval_count"), parsed, "prompt_eval_count")
        parsed.output_tokens = as_int(obj.get("eval_count"), parsed, "eval_count")
        if parsed.input_tokens is not None and parsed.output_tokens is not None:
            parsed.total_tokens = add(parsed, "total_tokens", parsed.input_tokens, parsed.output_tokens)


def parse_body(op: str, body: Any, parsed: Parsed, want_text: bool) -> None:
    if isinstance(body, dict) and not error_from(body, parsed):
        _read(body, op, parsed, want_text)


def parse_event(op: str, event: Any, parsed: Parsed, want_text: bool) -> None:
    if isinstance(event, dict) and not error_from(event, parsed):
        _read(event, op, parsed, want_text)
