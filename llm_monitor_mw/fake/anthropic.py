"""The fake Anthropic Messages API: a message, or its SSE event stream, with Anthropic's error bodies and
rate-limit headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import CACHED_TOKENS, JSON, SSE_MEDIA, Ctx, Handler, Reply, StreamPlan, count_items, rid, sse_frame

NAME = "anthropic"


def messages(ctx: Ctx) -> Reply:
    body = ctx.body
    msg_id = "msg_01" + uuid.uuid4().hex[:22]
    usage: JSON = {
        "input_tokens": ctx.prompt_tokens(count_items(body.get("messages"))),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHED_TOKENS,
        "output_tokens": ctx.completion_tokens,
        "service_tier": "standard",
    }
    message: JSON = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": [{"type": "text", "text": ctx.text}],
        "stop_reason": "end_turn",
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
    event("head", "content_block_start", index=0, content_block={"type": "text", "text": ""})
    event("head", "ping")
    for piece in ctx.pieces:
        event("content", "content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    event("tail", "content_block_stop", index=0)
    event(
        "tail",
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
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
