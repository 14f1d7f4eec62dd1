"""OpenAI wire format: chat completions, legacy completions, embeddings, Responses API.

Also every OpenAI-compatible server (Azure OpenAI, Ollama ``/v1``, vLLM, OpenRouter, Groq, Together, Mistral,
DeepSeek, LM Studio, Gemini's OpenAI endpoint …): the shape comes from the path, the provider name from the host.
"""

from __future__ import annotations

from typing import Any

from .base import Parsed, add, as_int, dig, error_from
from .tools import ToolCalls

name = "openai"

# Chat finish reasons say nothing certain about tool calls: a forced tool_choice ends with "stop". The Responses
# API's final event lists every output item, so its streams need no finish reason to tell.
NO_TOOL_FINISH: frozenset[str] = frozenset()

# Output items that are calls for the caller's code to run; built-in tools the provider runs itself (web search,
# file search, code interpreter, MCP) are not tool calls the app was asked to make.
_RESPONSES_CALLS = {"function_call": "arguments", "custom_tool_call": "input"}

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


def _chat_tools(message: Any, tools: ToolCalls) -> None:
    """``message.tool_calls`` (function and custom tools) and the legacy ``message.function_call``."""
    if not isinstance(message, dict):
        return
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict):
            fn = call.get("function")
            if isinstance(fn, dict):
                tools.start(fn.get("name"), fn.get("arguments"))
            else:
                custom = call.get("custom")
                custom = custom if isinstance(custom, dict) else {}
                tools.start(custom.get("name"), custom.get("input"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        tools.start(legacy.get("name"), legacy.get("arguments"))


def _chat_delta_tools(delta: Any, tools: ToolCalls) -> None:
    """One chunk's ``delta.tool_calls``: a call's first delta has its id and name, later ones (same ``index``)
    pieces of its arguments."""
    if not isinstance(delta, dict):
        return
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        index, call_id = call.get("index"), call.get("id")
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        key: Any = None
        if isinstance(index, int) and not isinstance(index, bool):
            key = ("index", index)
        elif isinstance(call_id, str) and call_id:
            key = ("id", call_id)
        fn_name, arguments = fn.get("name"), fn.get("arguments")
        if key is None and fn_name is None:
            tools.more(None, arguments)  # no index, no id, no name: the call started last goes on
        else:
            tools.start(fn_name, arguments, key, call_id)
    legacy = delta.get("function_call")
    if isinstance(legacy, dict):
        tools.start(legacy.get("name"), legacy.get("arguments"), ("function_call", 0))


def _responses_tools(response: dict[str, Any], tools: ToolCalls) -> None:
    """The ``function_call``/``custom_tool_call`` items of a complete response's ``output``."""
    output = response.get("output")
    if not isinstance(output, list):
        return
    tools.reset()
    tools.final = True
    for item in output:
        if isinstance(item, dict):
            field = _call_field(item)
            if field is not None:
                tools.start(item.get("name"), item.get(field))


def _call_field(item: Any) -> str | None:
    """For an output item that is a tool call: the field holding its arguments."""
    kind = item.get("type") if isinstance(item, dict) else None
    return _RESPONSES_CALLS.get(kind) if isinstance(kind, str) else None


def _output_key(event: dict[str, Any]) -> tuple[str, int] | None:
    index = event.get("output_index")
    return ("output", index) if isinstance(index, int) and not isinstance(index, bool) else None


def _responses_text(response: dict[str, Any], parsed: Parsed) -> None:
    for item in response.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parsed.text_parts.append(part["text"])


def _billing(obj: dict[str, Any], parsed: Parsed) -> None:
    """The response id (``chatcmpl-...``, ``resp_...``) and the tier it was served at, from a body or chunk."""
    if isinstance(obj.get("id"), str) and obj["id"]:
        parsed.response_id = obj["id"]
    if isinstance(obj.get("service_tier"), str) and obj["service_tier"]:
        parsed.service_tier = obj["service_tier"]


def parse_body(op: str, body: Any, parsed: Parsed, want_text: bool) -> None:
    """Read a complete JSON response."""
    if not isinstance(body, dict) or error_from(body, parsed):
        return
    if isinstance(body.get("model"), str):
        parsed.response_model = body["model"]
    _billing(body, parsed)
    _usage(body.get("usage"), parsed, op)
    if op == "responses":
        status = body.get("status")
        parsed.finish_reason = status if isinstance(status, str) else None
        if want_text:
            _responses_text(body, parsed)
        _responses_tools(body, parsed.tools)
        return
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        parsed.finish_reason = first.get("finish_reason")
        if want_text:
            text = dig(first, "message", "content") if op == "chat" else first.get("text")
            if isinstance(text, str):
                parsed.text_parts.append(text)
        if op == "chat":
            _chat_tools(first.get("message"), parsed.tools)


_RESPONSES_END = {"response.completed", "response.failed", "response.incomplete"}
_ARGUMENT_DELTAS = {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}


def parse_event(op: str, event: Any, parsed: Parsed, want_text: bool) -> None:
    """Read one SSE ``data`` object of a chat/completions chunk stream or a Responses event stream."""
    if not isinstance(event, dict):
        return
    if op == "responses":
        kind = event.get("type")
        if not isinstance(kind, str):
            return
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
            _billing(event["response"], parsed)
        elif kind == "response.output_text.delta" and want_text and isinstance(event.get("delta"), str):
            parsed.text_parts.append(event["delta"])
        elif kind in _ARGUMENT_DELTAS:
            parsed.tools.more(_output_key(event), event.get("delta"))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = event.get("item")
            field = _call_field(item)
            key = _output_key(event)
            # A done item counts only when its added event was not kept (cut off by the head window).
            fresh = kind == "response.output_item.added" if key is None else not parsed.tools.known(key)
            if field is not None and fresh:
                parsed.tools.start(item.get("name"), item.get(field) or None, key)  # type: ignore[union-attr]
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
    _billing(event, parsed)
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
        if op == "chat":
            _chat_delta_tools(first.get("delta"), parsed.tools)
    # With the stop reason and the usage chunk in, nothing is left but [DONE]: a client that closes before it
    # has the whole call.
    if parsed.finish_reason is not None and parsed.saw_usage:
        parsed.completed = True
