"""The fake OpenAI API (and Azure OpenAI): chat completions, legacy completions, embeddings and the Responses API,
non-streamed and as SSE, with OpenAI's error bodies and rate-limit headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from .common import (
    AZURE_CHAT_MODEL,
    AZURE_EMBEDDING_MODEL,
    CACHED_TOKENS,
    DEFAULT_MODEL,
    JSON,
    SSE_MEDIA,
    Ctx,
    Handler,
    Reply,
    StreamPlan,
    count_items,
    embedding_inputs,
    function_tools,
    last_role,
    rid,
    sse_frame,
    tool_calls,
    vector,
    vector_b64,
)

NAME = "openai"


def _usage(prompt: int, completion: int, reasoning: int) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _error_frame(_pos: int) -> bytes:
    return sse_frame({"error": error_payload(500, "")})


def _tier(body: JSON) -> str:
    """The tier OpenAI reports: the one asked for (``flex``, ``priority``, ``scale``), ``default`` for ``auto``."""
    asked = body.get("service_tier")
    return asked if isinstance(asked, str) and asked not in ("", "auto") else "default"


def _include_usage(body: JSON) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def chat(ctx: Ctx, azure: bool = False) -> Reply:
    body = ctx.body
    usage = _usage(ctx.prompt_tokens(count_items(body.get("messages"))), ctx.completion_tokens, ctx.reasoning_tokens)
    common: JSON = {
        "id": rid("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.model,
        "service_tier": _tier(body),
        "system_fingerprint": "fp_fake0000",
    }
    # Asked for tools (the request offers some and the user spoke last): the reply is tool calls, no text.
    calls = tool_calls(ctx, function_tools(body.get("tools")), last_role(body.get("messages")) == "user", "call_")
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        message: JSON = {"role": "assistant", "content": ctx.text, "refusal": None, "annotations": []}
        if calls:
            message["content"] = None
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                for c in calls
            ]
        choice: JSON = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        reply: JSON = {**common, "choices": [choice], "usage": usage}
        if azure:
            filters = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
            choice["content_filter_results"] = filters
            reply["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": filters}]
        return reply

    with_usage = _include_usage(body)

    def chunk(choices: list[JSON], **extra: Any) -> bytes:
        data: JSON = {**common, "object": "chat.completion.chunk", "choices": choices}
        if with_usage:
            data["usage"] = None
        data.update(extra)
        return sse_frame(data)

    def choice_delta(delta: JSON, finish: str | None = None) -> list[JSON]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    plan = StreamPlan(SSE_MEDIA, error_frame=_error_frame)
    if calls:
        # The first delta of each call carries its index, id and name; later ones pieces of its arguments.
        for index, call in enumerate(calls):
            start = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            first: JSON = {"tool_calls": [start]}
            if index == 0:
                first = {"role": "assistant", "content": None, **first, "refusal": None}
            plan.add("head" if index == 0 else "content", chunk(choice_delta(first)))
            for piece in call.argument_pieces():
                plan.add(
                    "content", chunk(choice_delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
                )
    else:
        plan.add("head", chunk(choice_delta({"role": "assistant", "content": "", "refusal": None})))
        for piece in ctx.pieces:
            plan.add("content", chunk(choice_delta({"content": piece})))
    plan.add("tail", chunk(choice_delta({}, finish)))
    if with_usage:
        plan.add("tail", chunk([], usage=usage))
    plan.add("tail", b"data: [DONE]\n\n")
    return plan


def azure_chat(ctx: Ctx) -> Reply:
    ctx.model = AZURE_CHAT_MODEL
    return chat(ctx, azure=True)


def completions(ctx: Ctx) -> Reply:
    body = ctx.body
    prompt = ctx.prompt_tokens(count_items(body.get("prompt")))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": ctx.completion_tokens,
        "total_tokens": prompt + ctx.completion_tokens,
    }
    common: JSON = {
        "id": rid("cmpl-", 29),
        "object": "text_completion",
        "created": int(time.time()),
        "model": ctx.model,
        "system_fingerprint": None,
    }

    def choice(text: str, finish: str | None) -> JSON:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    if not body.get("stream"):
        return {**common, "choices": [choice(ctx.text, "stop")], "usage": usage}

    with_usage = _include_usage(body)

    def chunk(choices: list[JSON], **extra: Any) -> bytes:
        data: JSON = {**common, "choices": choices}
        if with_usage:
            data["usage"] = None
        data.update(extra)
        return sse_frame(data)

    plan = StreamPlan(SSE_MEDIA, error_frame=_error_frame)
    for piece in ctx.pieces:
        plan.add("content", chunk([choice(piece, None)]))
    plan.add("tail", chunk([choice("", "stop")]))
    if with_usage:
        plan.add("tail", chunk([], usage=usage))
    plan.add("tail", b"data: [DONE]\n\n")
    return plan


def embeddings(ctx: Ctx) -> Reply:
    inputs = embedding_inputs(ctx.body.get("input"))
    as_b64 = ctx.body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "index": k, "embedding": vector_b64(k) if as_b64 else vector(k)}
        for k in range(len(inputs))
    ]
    prompt = ctx.prompt_tokens(len(inputs))
    return {
        "object": "list",
        "data": data,
        "model": ctx.model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def azure_embeddings(ctx: Ctx) -> Reply:
    ctx.model = AZURE_EMBEDDING_MODEL
    return embeddings(ctx)


def responses(ctx: Ctx) -> Reply:
    body = ctx.body
    resp_id, msg_id, created = rid("resp_", 48), rid("msg_", 48), int(time.time())
    prompt = ctx.prompt_tokens(count_items(body.get("input")))
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": CACHED_TOKENS, "cache_write_tokens": 0},
        "output_tokens": ctx.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": ctx.reasoning_tokens},
        "total_tokens": prompt + ctx.completion_tokens,
    }
    part_done = {"type": "output_text", "annotations": [], "logprobs": [], "text": ctx.text}
    item_done = {"id": msg_id, "type": "message", "status": "completed", "content": [part_done], "role": "assistant"}
    calls = tool_calls(ctx, function_tools(body.get("tools"), nested=False), _user_turn(body.get("input")), "call_")
    call_items = [
        {
            "id": rid("fc_", 48),
            "type": "function_call",
            "status": "completed",
            "arguments": c.arguments_json,
            "call_id": c.id,
            "name": c.name,
        }
        for c in calls
    ]

    def response(status: str, output: list[JSON], usage_: JSON | None) -> JSON:
        return {
            "id": resp_id,
            "object": "response",
            "created_at": created,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": ctx.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": _tier(body),
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage_,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    if not body.get("stream"):
        return response("completed", call_items or [item_done], usage)

    plan = StreamPlan(SSE_MEDIA)

    def event(kind: str, name: str, **payload: Any) -> None:
        plan.add(kind, sse_frame({"type": name, "sequence_number": len(plan.frames), **payload}, event=name))

    # Mid-stream errors arrive nested under "error", as production sends them (the SDK type documents a flat shape).
    plan.error_frame = lambda pos: sse_frame(
        {
            "type": "error",
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": error_payload(500, "")["message"],
                "param": None,
            },
            "sequence_number": pos,
        },
        event="error",
    )
    where = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    event("head", "response.created", response=response("in_progress", [], None))
    event("head", "response.in_progress", response=response("in_progress", [], None))
    if calls:
        for index, (call, item) in enumerate(zip(calls, call_items, strict=True)):
            added = {**item, "status": "in_progress", "arguments": ""}
            event("content", "response.output_item.added", output_index=index, item=added)
            at = {"item_id": item["id"], "output_index": index}
            for piece in call.argument_pieces():
                event("content", "response.function_call_arguments.delta", **at, delta=piece)
            event("content", "response.function_call_arguments.done", **at, arguments=item["arguments"])
            event("content", "response.output_item.done", output_index=index, item=item)
        event("tail", "response.completed", response=response("completed", call_items, usage))
        return plan
    event(
        "head",
        "response.output_item.added",
        output_index=0,
        item={"id": msg_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
    )
    event("head", "response.content_part.added", **where, part={**part_done, "text": ""})
    for piece in ctx.pieces:
        event("content", "response.output_text.delta", **where, delta=piece, logprobs=[])
    event("tail", "response.output_text.done", **where, text=ctx.text, logprobs=[])
    event("tail", "response.content_part.done", **where, part=part_done)
    event("tail", "response.output_item.done", output_index=0, item=item_done)
    event("tail", "response.completed", response=response("completed", [item_done], usage))
    return plan


def _user_turn(value: Any) -> bool:
    """Whether a Responses ``input`` ends with the user's turn (a string is one user message)."""
    if isinstance(value, str):
        return True
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        last = value[-1]
        return last.get("role") == "user" and last.get("type", "message") == "message"
    return False


_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (simulated by the fake LLM)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: test."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist or you do not have access."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1. "
        "Please try again in 20s.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error_payload(status: int, model: str) -> JSON:
    kind, code, message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Simulated error {status}.")
    )
    return {"message": message.format(model=model or DEFAULT_MODEL), "type": kind, "param": None, "code": code}


def error_body(status: int, model: str) -> JSON:
    """OpenAI's error body for ``status``."""
    return {"error": error_payload(status, model)}


def response_headers(status: int, azure: bool) -> dict[str, str]:
    """OpenAI's response headers (Azure adds its own) for ``status``."""
    limited = status == 429
    headers = {
        "x-request-id": rid("req_", 32),
        "openai-processing-ms": "42",
        "openai-version": "2020-10-01",
        "openai-organization": "fake-org",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-requests": "0" if limited else "9999",
        "x-ratelimit-remaining-tokens": "0" if limited else "29999990",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-reset-tokens": "0s",
    }
    if azure:
        headers.update({"apim-request-id": str(uuid.uuid4()), "x-ms-region": "Sweden Central"})
    return headers


ROUTES: list[tuple[str, Handler, bool]] = [
    ("/v1/chat/completions", chat, False),
    ("/v1/completions", completions, False),
    ("/v1/embeddings", embeddings, False),
    ("/v1/responses", responses, False),
    ("/openai/deployments/{deployment}/chat/completions", azure_chat, True),
    ("/openai/deployments/{deployment}/embeddings", azure_embeddings, True),
]
"""``(path, handler, azure)`` of each route, all ``POST``."""
