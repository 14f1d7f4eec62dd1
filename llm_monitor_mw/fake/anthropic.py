"""The fake Anthropic Messages API: a message, or its SSE event stream, with Anthropic's error bodies and
rate-limit headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import (
    CACHED_TOKENS,
    JSON,
    SSE_MEDIA,
    Ctx,
    Handler,
    Reply,
    StreamPlan,
    count_items,
    last_role,
    rid,
    sse_frame,
    tool_calls,
)

NAME = "anthropic"


def _client_tools(tools: Any) -> list[tuple[str, Any]]:
    """``(name, input_schema)`` of the tools the caller runs (server tools, e.g. web search, have no schema)."""
    listed = tools if isinstance(tools, list) else []
    return [
        (t["name"], t.get("input_schema"))
        for t in listed
        if isinstance(t, dict) and isinstance(t.get("name"), str) and "input_schema" in t
    ]


def _user_turn(messages: Any) -> bool:
    """The user spoke last, and not only to return tool results."""
    if last_role(messages) != "user":
        return False
    content = messages[-1].get("content")
    return not (
        isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def messages(ctx: Ctx) -> Reply:
    body = ctx.body
    msg_id = "msg_01" + uuid.uuid4().hex[:22]
    calls = tool_calls(ctx, _client_tools(body.get("tools")), _user_turn(body.get("messages")), "toolu_01", 22)
    blocks: list[JSON] = [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in calls]
    stop_reason = "tool_use" if calls else "end_turn"
    # Cache writes by TTL, as the API splits them: x-fake-cache-5m / x-fake-cache-1h ask for that many tokens.
    writes = {ttl: ctx.request.headers.get(f"x-fake-cache-{ttl}", "") for ttl in ("5m", "1h")}
    split = {f"ephemeral_{ttl}_input_tokens": int(n) if n.isdigit() else 0 for ttl, n in writes.items()}
    usage: JSON = {
        "input_tokens": ctx.prompt_tokens(count_items(body.get("messages"))),
        "cache_creation_input_tokens": sum(split.values()),
        "cache_read_input_tokens": CACHED_TOKENS,
        "cache_creation": split,
        "output_tokens": ctx.completion_tokens,
        "service_tier": "standard",
    }
    message: JSON = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": blocks or [{"type": "text", "text": ctx.text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return message

    plan = StreamPlan(
        SSE_MEDIA,
        error_frame=lambda _pos: sse_frame(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, event="error"
        ),
    )

    def event(kind: str, name: str, **payload: Any) -> None:
        plan.add(kind, sse_frame({"type": name, **payload}, event=name))

    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    event("head", "message_start", message=start)
    if calls:
        # A tool_use block starts with an empty input; the input's JSON text follows in input_json_delta pieces.
        for index, (call, block) in enumerate(zip(calls, blocks, strict=True)):
            event(
                "head" if index == 0 else "content",
                "content_block_start",
                index=index,
                content_block={**block, "input": {}},
            )
            if index == 0:
                event("head", "ping")
            for piece in ["", *call.argument_pieces()]:
                event(
                    "content",
                    "content_block_delta",
                    index=index,
                    delta={"type": "input_json_delta", "partial_json": piece},
                )
            event("content" if index < len(calls) - 1 else "tail", "content_block_stop", index=index)
    else:
        event("head", "content_block_start", index=0, content_block={"type": "text", "text": ""})
        event("head", "ping")
        for piece in ctx.pieces:
            event("content", "content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        event("tail", "content_block_stop", index=0)
    event(
        "tail",
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": ctx.completion_tokens},
    )
    event("tail", "message_stop")
    return plan


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (simulated by the fake LLM)."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(status: int, model: str) -> JSON:
    """Anthropic's error body for ``status``."""
    kind, message = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Simulated error {status}.")
    )
    return {
        "type": "error",
        "error": {"type": kind, "message": message.format(model=model)},
        "request_id": rid("req_011C", 20),
    }


def response_headers(status: int, azure: bool) -> dict[str, str]:
    """Anthropic's response headers (request id, rate limits) for ``status``."""
    limited = status == 429
    reset = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"request-id": rid("req_011C", 20), "anthropic-organization-id": str(uuid.uuid4())}
    for what, limit in (("requests", 4000), ("tokens", 400000), ("input-tokens", 200000), ("output-tokens", 80000)):
        headers[f"anthropic-ratelimit-{what}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{what}-remaining"] = "0" if limited else str(limit - 1)
        headers[f"anthropic-ratelimit-{what}-reset"] = reset
    return headers


ROUTES: list[tuple[str, Handler, bool]] = [("/v1/messages", messages, False)]
"""``(path, handler, azure)`` of each route, all ``POST``."""
