"""The fake Gemini API (``/v1beta/models/{model}:{method}``): generateContent, streamGenerateContent (a JSON array,
or SSE with ``alt=sse``), embedContent, batchEmbedContents and countTokens, with Google's error bodies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from .common import (
    CACHED_TOKENS,
    DEFAULT_MODEL,
    JSON,
    Ctx,
    FakeToolCall,
    Reply,
    StreamPlan,
    count_items,
    dumps,
    sse_frame,
    tool_calls,
    vector,
)

NAME = "gemini"


def _usage(ctx: Ctx) -> JSON:
    prompt = ctx.prompt_tokens(count_items(ctx.body.get("contents")))
    thoughts = ctx.reasoning_tokens
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": ctx.completion_tokens,
        "totalTokenCount": prompt + ctx.completion_tokens + thoughts,
        "cachedContentTokenCount": CACHED_TOKENS,
        "thoughtsTokenCount": thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": CACHED_TOKENS}],
    }


def _declarations(tools: Any) -> list[tuple[str, Any]]:
    """``(name, parameters)`` of the ``functionDeclarations`` in a request's ``tools``."""
    out: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        decls = (
            (tool.get("functionDeclarations") or tool.get("function_declarations")) if isinstance(tool, dict) else None
        )
        for decl in decls if isinstance(decls, list) else ():
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                out.append((decl["name"], decl.get("parameters") or decl.get("parametersJsonSchema")))
    return out


def _user_turn(contents: Any) -> bool:
    """The last content is the user's (the default role), and not only function responses."""
    if not isinstance(contents, list) or not contents or not isinstance(contents[-1], dict):
        return False
    last = contents[-1]
    parts = last.get("parts")
    answers = isinstance(parts, list) and any(isinstance(p, dict) and "functionResponse" in p for p in parts)
    return last.get("role", "user") == "user" and not answers


def _calls(ctx: Ctx) -> list[FakeToolCall]:
    body = ctx.body
    return tool_calls(ctx, _declarations(body.get("tools")), _user_turn(body.get("contents")), "")


def _chunk(ctx: Ctx, response_id: str, text: str, final: bool, calls: list[FakeToolCall] | None = None) -> JSON:
    parts: list[JSON] = (
        [{"functionCall": {"name": c.name, "args": c.arguments}} for c in calls] if calls else [{"text": text}]
    )
    candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": 0}
    data: JSON = {"candidates": [candidate]}
    if final:
        candidate["finishReason"] = "STOP"
        data["usageMetadata"] = _usage(ctx)
    data.update(modelVersion=ctx.model, responseId=response_id)
    return data


def error_payload(status: int, model: str) -> JSON:
    name, message = _ERRORS.get(status, ("INTERNAL" if status >= 500 else "UNKNOWN", f"Simulated error {status}."))
    return {"code": status, "message": message.format(model=model or DEFAULT_MODEL), "status": name}


def generate(ctx: Ctx, stream: bool, sse: bool) -> Reply:
    response_id = uuid.uuid4().hex[:22]
    calls = _calls(ctx)
    if not stream:
        return _chunk(ctx, response_id, ctx.text, final=True, calls=calls)
    if calls:  # each function call arrives whole, one per chunk; the last chunk has the finish reason
        chunks = [_chunk(ctx, response_id, "", final=i == len(calls) - 1, calls=[c]) for i, c in enumerate(calls)]
    else:
        pieces = ctx.pieces or [""]
        chunks = [_chunk(ctx, response_id, p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    error = {"error": error_payload(503, ctx.model)}
    if sse:
        plan = StreamPlan("text/event-stream", error_frame=lambda _pos: sse_frame(error, sep="\r\n\r\n"))
        for i, data in enumerate(chunks):
            plan.add("tail" if i == len(chunks) - 1 else "content", sse_frame(data, sep="\r\n\r\n"))
        return plan
    # Without alt=sse Gemini streams one JSON array, element by element.
    plan = StreamPlan(
        "application/json; charset=UTF-8",
        error_frame=lambda _pos: (",\r\n" + dumps(error) + "]").encode(),
        garbage=(b",\r\n{not json",),
    )
    for i, data in enumerate(chunks):
        plan.add("content", (("[" if i == 0 else ",\r\n") + dumps(data)).encode())
    plan.add("tail", b"]")
    return plan


def embed(ctx: Ctx, batch: bool) -> Reply:
    if batch:
        return {"embeddings": [{"values": vector(k)} for k in range(len(ctx.body.get("requests") or []))]}
    return {"embedding": {"values": vector(0)}}


def count_tokens(ctx: Ctx) -> Reply:
    total = ctx.prompt_tokens(count_items(ctx.body.get("contents")))
    return {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/{model} is not found for API version v1beta."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def error_body(status: int, model: str) -> JSON:
    """Gemini's error body for ``status``."""
    return {"error": error_payload(status, model)}


def response_headers(status: int, azure: bool) -> dict[str, str]:
    """Gemini's response headers."""
    return {"server-timing": "gfet4t7; dur=42", "vary": "Origin, X-Origin, Referer"}


METHODS: dict[str, Callable[[Ctx, bool], Reply]] = {
    "generateContent": lambda ctx, _sse: generate(ctx, stream=False, sse=False),
    "streamGenerateContent": lambda ctx, sse: generate(ctx, stream=True, sse=sse),
    "embedContent": lambda ctx, _sse: embed(ctx, batch=False),
    "batchEmbedContents": lambda ctx, _sse: embed(ctx, batch=True),
    "countTokens": lambda ctx, _sse: count_tokens(ctx),
}
"""The handler of each ``:method``, given whether ``alt=sse`` was asked."""
