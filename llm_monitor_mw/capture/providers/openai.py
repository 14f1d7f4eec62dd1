"""OpenAI wire format: chat completions, legacy completions, embeddings, Responses API.

Also every OpenAI-compatible server (Azure OpenAI, Ollama ``/v1``, vLLM, OpenRouter, Groq, Together, Mistral,
DeepSeek, LM Studio, Gemini's OpenAI endpoint …): the shape comes from the path, the provider name from the host.
"""

from __future__ import annotations

from typing import Any

from .base import Parsed, add, as_int, dig, error_from

name = "openai"

_SUFFIXES = (
    ("/chat/completions", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embeddings"),
    ("/responses", "responses"),
)


def operation(method: str, path: str) -> str | None:
    """``chat`` / ``text_completion`` / ``embeddings`` / ``responses`` from the path suffix (POST only)."""
    if method != "POST":
        return None
    for suffix, op in _SUFFIXES:
        if path.endswith(suffix):
            return op
    return None


def model_from_path(path: str) -> str | None:
    """Azure puts the deployment name in the path: ``/openai/deployments/{name}/...``."""
    marker = "/deployments/"
    i = path.find(marker)
    if i < 0:
        return None
    rest = path[i + len(marker) :]
    return rest.split("/", 1)[0] or None


def streams_by_default(op: str) -> bool:
    return False


def streamed_body(op: str) -> bool:
    return False


# The Responses API names the usage fields input/output; chat completions and embeddings name them prompt/completion.
_USAGE_NAMES = {"responses": ("input", "output")}
_DEFAULT_USAGE_NAMES = ("prompt", "completion")


def _usage(usage: Any, parsed: Parsed, op: str) -> None:
    if not isinstance(usage, dict):
        return
    parsed.saw_usage = True
    inp, out_name = _USAGE_NAMES.get(op, _DEFAULT_USAGE_NAMES)
    parsed.input_tokens = as_int(usage.get(f"{inp}_tokens"), parsed, f"usage.{inp}_tokens")
    out = as_int(usage.get(f"{out_name}_tokens"), parsed, f"usage.{out_name}_tokens")
    if op == "embeddings" and out is None and parsed.input_tokens is not None:
        out = 0  # embeddings produce no output tokens: a known zero
    parsed.output_tokens = out
    parsed.cached_tokens = as_int(
        dig(usage, f"{inp}_tokens_details", "cached_tokens"), parsed, f"usage.{inp}_tokens_details.cached_tokens"
    )
    parsed.reasoning_tokens = as_int(
        dig(usage, f"{out_name}_tokens_details", "reasoning_tokens"),
        parsed,
        f"usage.{out_name}_tokens_details.reasoning_tokens",
    )
    total = as_int(usage.get("total_tokens"), parsed, "usage.total_tokens")
    if total is None and parsed.input_tokens is not None and parsed.output_tokens is not None:
        total = add(parsed, "total_tokens", parsed.input_tokens, parsed.output_tokens)
    parsed.total_tokens = total


def _responses_text(response: dict[str, Any], parsed: Parsed) -> None:
    for item in response.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parsed.text_parts.append(part["text"])


def parse_body(op: str, body: Any, parsed: Parsed, want_text: bool) -> None:
    """Read a complete JSON response."""
    if not isinstance(body, dict) or error_from(body, parsed):
        return
    if isinstance(body.get("model"), str):
        parsed.response_model = body["model"]
    _usage(body.get("usage"), parsed, op)
    if op == "responses":
        status = body.get("status")
        parsed.finish_reason = status if isinstance(status, str) else None
        if want_text:
            _responses_text(body, parsed)
        return
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        parsed.finish_reason = first.get("finish_reason")
        if want_text:
            text = dig(first, "message", "content") if op == "chat" else first.get("text")
            if isinstance(text, str):
                parsed.text_parts.append(text)


_RESPONSES_END = {"response.completed", "response.failed", "response.incomplete"}


def parse_event(op: str, event: Any, parsed: Parsed, want_text: bool) -> None:
    """Read one SSE ``data`` object of a chat/completions chunk stream or a Responses event stream."""
    if not isinstance(event, dict):
        return
    if op == "responses":
        kind = event.get("type")
        if kind in _RESPONSES_END:
            parsed.completed = True
            response = event.get("response")
            if isinstance(response, dict):
                parse_body(op, response, parsed, False)
                err = response.get("error")
                if isinstance(err, dict):
                    parsed.error_type = str(err.get("code") or "error")
                    parsed.error = str(err.get("message") or err)
        elif kind == "response.created" and isinstance(event.get("response"), dict):
            model = event["response"].get("model")
            parsed.response_model = model if isinstance(model, str) else parsed.response_model
        elif kind == "response.output_text.delta" and want_text and isinstance(event.get("delta"), str):
            parsed.text_parts.append(event["delta"])
        elif kind == "error":
            # Documented flat ({"code", "message"}); the service also sends it nested under "error".
            err = event["error"] if isinstance(event.get("error"), dict) else event
            parsed.error_type = str(err.get("code") or err.get("type") or "error")
            parsed.error = str(err.get("message") or err)
        return
    if error_from(event, parsed):
        return
    if isinstance(event.get("model"), str):
        parsed.response_model = event["model"]
    if event.get("usage"):
        _usage(event["usage"], parsed, op)
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        if first.get("finish_reason"):
            parsed.finish_reason = first["finish_reason"]
        if want_text:
            text = dig(first, "delta", "content") if op == "chat" else first.get("text")
            if isinstance(text, str):
                parsed.text_parts.append(text)
    # With the stop reason and the usage chunk in, nothing is left but [DONE]: a client that closes before it
    # has the whole call.
    if parsed.finish_reason is not None and parsed.saw_usage:
        parsed.completed = True
