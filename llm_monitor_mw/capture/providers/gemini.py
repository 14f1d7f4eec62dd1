"""Google Gemini API (``generateContent``, ``streamGenerateContent``, ``embedContent``), AI Studio and Vertex AI."""

from __future__ import annotations

from typing import Any

from .base import Parsed, add, as_int, dig, error_from

name = "gemini"

# Gemini ends with "STOP" whether or not it asked for function calls.
NO_TOOL_FINISH: frozenset[str] = frozenset()

_METHODS = {
    "generateContent": "generate_content",
    "streamGenerateContent": "stream_generate_content",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}


def operation(method: str, path: str) -> str | None:
    """The operation from the ``:method`` suffix of ``.../models/{model}:method``."""
    if method != "POST" or "/models/" not in path:
        return None
    _, sep, verb = path.rpartition(":")
    return _METHODS.get(verb) if sep else None


def model_from_path(path: str) -> str | None:
    """``gemini-2.5-flash`` from ``/v1beta/models/gemini-2.5-flash:generateContent``."""
    tail = path.rsplit("/models/", 1)[-1]
    return tail.split(":", 1)[0] or None


def streams_by_default(op: str) -> bool:
    return op == "stream_generate_content"


def streamed_body(op: str) -> bool:
    """``streamGenerateContent`` without ``alt=sse`` streams a JSON array of responses."""
    return op == "stream_generate_content"


def _read(chunk: dict[str, Any], parsed: Parsed, want_text: bool) -> None:
    if isinstance(chunk.get("modelVersion"), str):
        parsed.response_model = chunk["modelVersion"]
    if isinstance(chunk.get("responseId"), str) and chunk["responseId"]:
        parsed.response_id = chunk["responseId"]
    meta = chunk.get("usageMetadata")
    if isinstance(meta, dict):
        parsed.saw_usage = True
        prompt = as_int(meta.get("promptTokenCount"), parsed, "usageMetadata.promptTokenCount")
        tool_prompt = as_int(meta.get("toolUsePromptTokenCount"), parsed, "usageMetadata.toolUsePromptTokenCount")
        candidates = as_int(meta.get("candidatesTokenCount"), parsed, "usageMetadata.candidatesTokenCount")
        thoughts = as_int(meta.get("thoughtsTokenCount"), parsed, "usageMetadata.thoughtsTokenCount")
        parsed.input_tokens = add(parsed, "input_tokens", prompt, tool_prompt) if prompt is not None else None
        # A response with no candidates text reports no candidatesTokenCount: that is zero output, not unknown
        # (an invalid one is unknown).
        if candidates is None and meta.get("candidatesTokenCount") is not None:
            parsed.output_tokens = None
        elif prompt is not None or candidates is not None:
            parsed.output_tokens = add(parsed, "output_tokens", candidates or 0, thoughts)
        parsed.reasoning_tokens = thoughts if thoughts is not None else (0 if prompt is not None else None)
        cached = meta.get("cachedContentTokenCount")
        parsed.cached_tokens = as_int(cached, parsed, "usageMetadata.cachedContentTokenCount")
        if parsed.input_tokens is not None and parsed.output_tokens is not None:
            parsed.total_tokens = add(parsed, "total_tokens", parsed.input_tokens, parsed.output_tokens)
    candidates_list = chunk.get("candidates")
    if isinstance(candidates_list, list) and candidates_list and isinstance(candidates_list[0], dict):
        first = candidates_list[0]
        if first.get("finishReason"):
            parsed.finish_reason = first["finishReason"]
            parsed.completed = True
        parts = dig(first, "content", "parts")
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            if want_text and isinstance(part.get("text"), str):
                parsed.text_parts.append(part["text"])
            call = part.get("functionCall")
            if isinstance(call, dict):  # whole in one part, also when streamed
                parsed.tools.start(call.get("name"), call.get("args"))


def parse_body(op: str, body: Any, parsed: Parsed, want_text: bool) -> None:
    """A ``GenerateContentResponse``, a JSON array of them (streaming without ``alt=sse``), or an embedding."""
    if isinstance(body, list):
        for item in body:
            parse_event(op, item, parsed, want_text)
        return
    if not isinstance(body, dict) or error_from(body, parsed):
        return
    _read(body, parsed, want_text)
    parsed.completed = True


def parse_event(op: str, event: Any, parsed: Parsed, want_text: bool) -> None:
    """One streamed ``GenerateContentResponse``; usage metadata is cumulative, the last one wins."""
    if not isinstance(event, dict) or error_from(event, parsed):
        return
    _read(event, parsed, want_text)
