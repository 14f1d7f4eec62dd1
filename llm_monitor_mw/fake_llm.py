"""A bundled local fake LLM server for tests, benchmarks and the demo.

It speaks the real wire formats of the OpenAI (and Azure OpenAI), Anthropic, Gemini and Ollama HTTP APIs -- the
same field names, SSE event names and NDJSON lines the real services send -- so the official ``openai`` and
``anthropic`` SDKs (and plain httpx code) parse its answers without noticing the difference.

Routes (all ``POST``)::

    /v1/chat/completions   /v1/completions   /v1/embeddings   /v1/responses             OpenAI (also Ollama's /v1)
    /openai/deployments/{deployment}/chat/completions | /embeddings                   Azure OpenAI
    /v1/messages                                                                        Anthropic
    /v1beta/models/{model}:generateContent | :streamGenerateContent[?alt=sse] | :embedContent
                          | :batchEmbedContents | :countTokens                            Gemini
    /api/chat   /api/generate   /api/embed   /api/embeddings                            Ollama native (NDJSON)

Deterministic content: the reply is ``N`` chunks (``x-fake-chunks``, default 5) cycling through the words of
``REPLY_TEXT``, so with the default the text is exactly ``"Hello from the fake LLM."``.  Token counts:

* prompt / input tokens  = ``BASE_PROMPT_TOKENS`` (10) + number of prompt items (messages, contents, inputs)
* completion / output tokens = number of chunks ``N``
* cached tokens = ``CACHED_TOKENS`` (2), reasoning / thoughts tokens = ``REASONING_TOKENS`` (1, at most ``N``),
  reported wherever the provider has such a field (OpenAI chat & Responses, Anthropic cache reads, Gemini)
* embeddings are ``EMBEDDING_DIM`` (8) float32-exact floats per input (base64 when ``encoding_format`` asks,
  which the ``openai`` SDK does by default)
* ``big-body`` answers carry 5 MB of text and ``len(text) // 4`` completion tokens

``FakeLLMServer.requests_seen`` (the same list as ``app.state.requests_seen``) holds one dict per request:
``{"method", "path", "query" (dict of query parameters), "headers" (lower-cased dict), "body" (bytes)}``.

Test-control request headers (any route):

``x-fake-status: N``        answer with status ``N`` and the provider's error body (429 and 5xx also carry
                            ``retry-after: 0`` plus ``retry-after-ms: 1`` so SDK retries are instant; override the
                            seconds with ``x-fake-retry-after``)
``x-fake-fail-times: K``    only the first ``K`` requests with the same ``x-fake-key`` (default: the path) get the
                            ``x-fake-status`` / ``x-fake-behavior`` treatment, later ones succeed
``x-fake-behavior: B``      ``malformed-json`` | ``non-json`` | ``truncate`` | ``malformed-sse`` | ``big-body`` |
                            ``disconnect`` | ``error-event`` (``truncate`` / ``disconnect`` cut a non-streamed
                            JSON body in half; ``malformed-sse`` / ``error-event`` only change streams)
``x-fake-chunk-delay: S``   seconds to sleep between streamed events (once before a non-streamed answer)
``x-fake-gzip: 1``          gzip the body (streams are compressed incrementally, one sync-flush per event)
``x-fake-chunks: N``        number of content chunks
``x-fake-error-message: T`` with ``x-fake-status``: ``T`` as the error body's message (latin-1, as headers are)

Run standalone with ``python -m llm_monitor_mw.fake_llm [--host HOST] [--port PORT]`` (default 127.0.0.1:8700;
``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "AZURE_CHAT_MODEL",
    "AZURE_EMBEDDING_MODEL",
    "BASE_PROMPT_TOKENS",
    "CACHED_TOKENS",
    "DEFAULT_CHUNKS",
    "EMBEDDING_DIM",
    "REASONING_TOKENS",
    "REPLY_TEXT",
    "FakeLLMServer",
    "create_app",
    "reply_pieces",
]

REPLY_WORDS = ("Hello", "from", "the", "fake", "LLM.")
REPLY_TEXT = " ".join(REPLY_WORDS)
DEFAULT_CHUNKS = 5
BASE_PROMPT_TOKENS = 10
CACHED_TOKENS = 2
REASONING_TOKENS = 1
EMBEDDING_DIM = 8
BIG_BODY_CHARS = 5 * 1024 * 1024
AZURE_CHAT_MODEL = "gpt-4o-2024-08-06"
AZURE_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_MODEL = "fake-model"

JSON = dict[str, Any]
Frame = tuple[str, bytes]  # (kind, raw bytes); kind is "head", "content" or "tail"

SSE_MEDIA = "text/event-stream; charset=utf-8"
NDJSON_MEDIA = "application/x-ndjson"
JSON_MEDIA = "application/json"


class SimulatedDisconnect(Exception):
    """Raised inside a streaming body to make uvicorn abort the connection mid-response."""


# --------------------------------------------------------------------------------------------------------------------
# small helpers


def reply_pieces(n_chunks: int = DEFAULT_CHUNKS) -> list[str]:
    """The streamed content pieces for ``n_chunks`` chunks; ``"".join()`` gives the full reply text."""
    return [("" if i == 0 else " ") + REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(max(0, n_chunks))]


def _big_pieces(n_chunks: int) -> list[str]:
    text = ("lorem ipsum dolor sit amet " * (BIG_BODY_CHARS // 27 + 1))[:BIG_BODY_CHARS]
    n = max(1, n_chunks)
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _sse(data: Any, event: str | None = None, sep: str = "\n\n") -> bytes:
    payload = data if isinstance(data, str) else _dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}{sep}".encode()


def _ndjson(data: Any) -> bytes:
    return (_dumps(data) + "\n").encode()


def _rid(prefix: str, n: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:n]


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _count(value: Any) -> int:
    """How many prompt items ``value`` holds (a string or a token list is one item)."""
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)
    return 1 if value else 0


def _embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return list(value)
    return [value]


def _vector(index: int) -> list[float]:
    """Deterministic, exactly float32-representable values (so base64 round trips are exact)."""
    return [(i + 1) / 16 + index / 256 for i in range(EMBEDDING_DIM)]


def _vector_b64(index: int) -> str:
    return base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *_vector(index))).decode("ascii")


# --------------------------------------------------------------------------------------------------------------------
# per-request context and stream plans


@dataclass
class Ctx:
    """Everything a route handler needs to build its answer."""

    provider: str  # "openai" | "anthropic" | "gemini" | "ollama"
    request: Request
    body: JSON
    model: str
    pieces: list[str]
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def prompt_tokens(self, items: int) -> int:
        return BASE_PROMPT_TOKENS + items

    @property
    def reasoning_tokens(self) -> int:
        return min(REASONING_TOKENS, self.completion_tokens)


@dataclass
class StreamPlan:
    """A streamed answer: the frames in order, plus what the behaviours need to mangle it."""

    media_type: str
    frames: list[Frame] = field(default_factory=list)
    error_frame: Callable[[int], bytes] = lambda _pos: b""  # the provider's in-stream error at a frame position
    garbage: tuple[bytes, ...] = (b"data: {not json\n\n", b"this line is not SSE at all\n\n")

    def add(self, kind: str, frame: bytes) -> None:
        self.frames.append((kind, frame))


Reply = JSON | StreamPlan
Handler = Callable[[Ctx], Reply]


# --------------------------------------------------------------------------------------------------------------------
# OpenAI (and Azure OpenAI)


def _openai_usage(prompt: int, completion: int, reasoning: int) -> JSON:
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


def _openai_error_frame(_pos: int) -> bytes:
    return _sse({"error": _openai_error_payload(500, "")})


def _include_usage(body: JSON) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _openai_chat(ctx: Ctx, azure: bool = False) -> Reply:
    body = ctx.body
    usage = _openai_usage(ctx.prompt_tokens(_count(body.get("messages"))), ctx.completion_tokens, ctx.reasoning_tokens)
    common: JSON = {
        "id": _rid("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake0000",
    }
    if not body.get("stream"):
        message = {"role": "assistant", "content": ctx.text, "refusal": None, "annotations": []}
        choice: JSON = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
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
        return _sse(data)

    def choice_delta(delta: JSON, finish: str | None = None) -> list[JSON]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    plan = StreamPlan(SSE_MEDIA, error_frame=_openai_error_frame)
    plan.add("head", chunk(choice_delta({"role": "assistant", "content": "", "refusal": None})))
    for piece in ctx.pieces:
        plan.add("content", chunk(choice_delta({"content": piece})))
    plan.add("tail", chunk(choice_delta({}, "stop")))
    if with_usage:
        plan.add("tail", chunk([], usage=usage))
    plan.add("tail", b"data: [DONE]\n\n")
    return plan


def _azure_chat(ctx: Ctx) -> Reply:
    ctx.model = AZURE_CHAT_MODEL
    return _openai_chat(ctx, azure=True)


def _openai_completions(ctx: Ctx) -> Reply:
    body = ctx.body
    prompt = ctx.prompt_tokens(_count(body.get("prompt")))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": ctx.completion_tokens,
        "total_tokens": prompt + ctx.completion_tokens,
    }
    common: JSON = {
        "id": _rid("cmpl-", 29),
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
        return _sse(data)

    plan = StreamPlan(SSE_MEDIA, error_frame=_openai_error_frame)
    for piece in ctx.pieces:
        plan.add("content", chunk([choice(piece, None)]))
    plan.add("tail", chunk([choice("", "stop")]))
    if with_usage:
        plan.add("tail", chunk([], usage=usage))
    plan.add("tail", b"data: [DONE]\n\n")
    return plan


def _openai_embeddings(ctx: Ctx) -> Reply:
    inputs = _embedding_inputs(ctx.body.get("input"))
    as_b64 = ctx.body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "index": k, "embedding": _vector_b64(k) if as_b64 else _vector(k)}
        for k in range(len(inputs))
    ]
    prompt = ctx.prompt_tokens(len(inputs))
    return {
        "object": "list",
        "data": data,
        "model": ctx.model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def _azure_embeddings(ctx: Ctx) -> Reply:
    ctx.model = AZURE_EMBEDDING_MODEL
    return _openai_embeddings(ctx)


def _openai_responses(ctx: Ctx) -> Reply:
    body = ctx.body
    resp_id, msg_id, created = _rid("resp_", 48), _rid("msg_", 48), int(time.time())
    prompt = ctx.prompt_tokens(_count(body.get("input")))
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": CACHED_TOKENS, "cache_write_tokens": 0},
        "output_tokens": ctx.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": ctx.reasoning_tokens},
        "total_tokens": prompt + ctx.completion_tokens,
    }
    part_done = {"type": "output_text", "annotations": [], "logprobs": [], "text": ctx.text}
    item_done = {"id": msg_id, "type": "message", "status": "completed", "content": [part_done], "role": "assistant"}

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
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage_,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    if not body.get("stream"):
        return response("completed", [item_done], usage)

    plan = StreamPlan(SSE_MEDIA)

    def event(kind: str, name: str, **payload: Any) -> None:
        plan.add(kind, _sse({"type": name, "sequence_number": len(plan.frames), **payload}, event=name))

    # Mid-stream errors arrive nested under "error", as production sends them (the SDK type documents a flat shape).
    plan.error_frame = lambda pos: _sse(
        {
            "type": "error",
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": _openai_error_payload(500, "")["message"],
                "param": None,
            },
            "sequence_number": pos,
        },
        event="error",
    )
    where = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    event("head", "response.created", response=response("in_progress", [], None))
    event("head", "response.in_progress", response=response("in_progress", [], None))
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


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
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


def _openai_error_payload(status: int, model: str) -> JSON:
    kind, code, message = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Simulated error {status}.")
    )
    return {"message": message.format(model=model or DEFAULT_MODEL), "type": kind, "param": None, "code": code}


# --------------------------------------------------------------------------------------------------------------------
# Anthropic


def _anthropic_messages(ctx: Ctx) -> Reply:
    body = ctx.body
    msg_id = "msg_01" + uuid.uuid4().hex[:22]
    usage: JSON = {
        "input_tokens": ctx.prompt_tokens(_count(body.get("messages"))),
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
        error_frame=lambda _pos: _sse(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, event="error"
        ),
    )

    def event(kind: str, name: str, **payload: Any) -> None:
        plan.add(kind, _sse({"type": name, **payload}, event=name))

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


_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (simulated by the fake LLM)."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


# --------------------------------------------------------------------------------------------------------------------
# Gemini


def _gemini_usage(ctx: Ctx) -> JSON:
    prompt = ctx.prompt_tokens(_count(ctx.body.get("contents")))
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


def _gemini_chunk(ctx: Ctx, response_id: str, text: str, final: bool) -> JSON:
    candidate: JSON = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    data: JSON = {"candidates": [candidate]}
    if final:
        candidate["finishReason"] = "STOP"
        data["usageMetadata"] = _gemini_usage(ctx)
    data.update(modelVersion=ctx.model, responseId=response_id)
    return data


def _gemini_error_payload(status: int, model: str) -> JSON:
    name, message = _GEMINI_ERRORS.get(
        status, ("INTERNAL" if status >= 500 else "UNKNOWN", f"Simulated error {status}.")
    )
    return {"code": status, "message": message.format(model=model or DEFAULT_MODEL), "status": name}


def _gemini_generate(ctx: Ctx, stream: bool, sse: bool) -> Reply:
    response_id = uuid.uuid4().hex[:22]
    if not stream:
        return _gemini_chunk(ctx, response_id, ctx.text, final=True)
    pieces = ctx.pieces or [""]
    chunks = [_gemini_chunk(ctx, response_id, p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    error = {"error": _gemini_error_payload(503, ctx.model)}
    if sse:
        plan = StreamPlan("text/event-stream", error_frame=lambda _pos: _sse(error, sep="\r\n\r\n"))
        for i, data in enumerate(chunks):
            plan.add("tail" if i == len(chunks) - 1 else "content", _sse(data, sep="\r\n\r\n"))
        return plan
    # Without alt=sse Gemini streams one JSON array, element by element.
    plan = StreamPlan(
        "application/json; charset=UTF-8",
        error_frame=lambda _pos: (",\r\n" + _dumps(error) + "]").encode(),
        garbage=(b",\r\n{not json",),
    )
    for i, data in enumerate(chunks):
        plan.add("content", (("[" if i == 0 else ",\r\n") + _dumps(data)).encode())
    plan.add("tail", b"]")
    return plan


def _gemini_embed(ctx: Ctx, batch: bool) -> Reply:
    if batch:
        return {"embeddings": [{"values": _vector(k)} for k in range(len(ctx.body.get("requests") or []))]}
    return {"embedding": {"values": _vector(0)}}


def _gemini_count_tokens(ctx: Ctx) -> Reply:
    total = ctx.prompt_tokens(_count(ctx.body.get("contents")))
    return {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}


_GEMINI_ERRORS: dict[int, tuple[str, str]] = {
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


# --------------------------------------------------------------------------------------------------------------------
# Ollama (native API: NDJSON streaming by default)


def _ollama_stats(ctx: Ctx, prompt: int) -> JSON:
    load, prompt_eval, evaluation = 1_500_000, 12_000_000 + prompt * 1_000, ctx.completion_tokens * 20_000_000
    return {
        "done_reason": "stop",
        "done": True,
        "total_duration": load + prompt_eval + evaluation + 3_000_000,
        "load_duration": load,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": prompt_eval,
        "eval_count": ctx.completion_tokens,
        "eval_duration": evaluation,
    }


def _ollama_generate(ctx: Ctx, chat: bool) -> Reply:
    body = ctx.body
    prompt = ctx.prompt_tokens(_count(body.get("messages")) if chat else 1)

    def line(text: str) -> JSON:
        data: JSON = {"model": ctx.model, "created_at": _now_rfc3339()}
        if chat:
            data["message"] = {"role": "assistant", "content": text}
        else:
            data["response"] = text
        return data

    def final(text: str) -> JSON:
        data = {**line(text), **_ollama_stats(ctx, prompt)}
        if not chat:
            data["context"] = [1, 2, 3]
        return data

    if body.get("stream", True) is False:
        return final(ctx.text)
    plan = StreamPlan(
        NDJSON_MEDIA,
        error_frame=lambda _pos: _ndjson({"error": "model runner has unexpectedly stopped"}),
        garbage=(b"{not json\n",),
    )
    for piece in ctx.pieces:
        plan.add("content", _ndjson({**line(piece), "done": False}))
    plan.add("tail", _ndjson(final("")))
    return plan


def _ollama_embed(ctx: Ctx, legacy: bool) -> Reply:
    if legacy:  # /api/embeddings: one prompt, one vector
        return {"embedding": _vector(0)}
    inputs = _embedding_inputs(ctx.body.get("input"))
    return {
        "model": ctx.model,
        "embeddings": [_vector(k) for k in range(len(inputs))],
        "total_duration": 14_143_917,
        "load_duration": 1_019_500,
        "prompt_eval_count": ctx.prompt_tokens(len(inputs)),
    }


# --------------------------------------------------------------------------------------------------------------------
# provider tables: error bodies and response headers


def _error_body(provider: str, status: int, model: str) -> JSON:
    if provider == "anthropic":
        kind, message = _ANTHROPIC_ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", f"Simulated error {status}.")
        )
        return {
            "type": "error",
            "error": {"type": kind, "message": message.format(model=model)},
            "request_id": _rid("req_011C", 20),
        }
    if provider == "gemini":
        return {"error": _gemini_error_payload(status, model)}
    if provider == "ollama":
        return {
            "error": f'model "{model}" not found, try pulling it first'
            if status == 404
            else f"simulated error {status}"
        }
    return {"error": _openai_error_payload(status, model)}


def _provider_headers(provider: str, status: int, azure: bool) -> dict[str, str]:
    limited = status == 429
    if provider == "openai":
        headers = {
            "x-request-id": _rid("req_", 32),
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
    if provider == "anthropic":
        reset = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {"request-id": _rid("req_011C", 20), "anthropic-organization-id": str(uuid.uuid4())}
        for what, limit in (("requests", 4000), ("tokens", 400000), ("input-tokens", 200000), ("output-tokens", 80000)):
            headers[f"anthropic-ratelimit-{what}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{what}-remaining"] = "0" if limited else str(limit - 1)
            headers[f"anthropic-ratelimit-{what}-reset"] = reset
        return headers
    if provider == "gemini":
        return {"server-timing": "gfet4t7; dur=42", "vary": "Origin, X-Origin, Referer"}
    return {}


# --------------------------------------------------------------------------------------------------------------------
# rendering: behaviours, delays, gzip


def _select_frames(plan: StreamPlan, behavior: str) -> tuple[list[bytes], bool]:
    """The frames to send for ``behavior`` and whether to abort the connection afterwards."""
    frames = [frame for _, frame in plan.frames]
    content_at = [i for i, (kind, _) in enumerate(plan.frames) if kind == "content"]
    if behavior == "truncate":
        n_tail = sum(1 for kind, _ in plan.frames if kind == "tail")
        return frames[: min(len(frames) // 2, len(frames) - n_tail)], False
    if behavior == "disconnect":
        return frames[: len(frames) // 2], True
    if behavior == "error-event":
        cut = content_at[min(1, len(content_at) - 1)] + 1 if content_at else len(frames) // 2
        return [*frames[:cut], plan.error_frame(cut)], False
    if behavior == "malformed-sse":
        at = content_at[0] + 1 if content_at else 1
        return [*frames[:at], *plan.garbage, *frames[at:]], False
    return frames, False


async def _body_stream(frames: list[bytes], delay: float, gzip: bool, abort: bool) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(wbits=31) if gzip else None
    for i, frame in enumerate(frames):
        if i:  # always yield to the loop, so a client hanging up mid-stream is noticed before the next write
            await asyncio.sleep(max(0.0, delay))
        yield compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH) if compressor else frame
    if abort:
        raise SimulatedDisconnect("x-fake-behavior: disconnect")
    if compressor:
        yield compressor.flush()


def _header_num(request: Request, name: str, default: float) -> float:
    try:
        return float(request.headers.get(name, default))
    except ValueError:
        return default


class _QuietSimulatedDisconnects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedDisconnect))


def _quiet_simulated_disconnects() -> None:
    """Keep uvicorn from logging a traceback for each deliberate ``disconnect``."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietSimulatedDisconnects) for f in logger.filters):
        logger.addFilter(_QuietSimulatedDisconnects())


# --------------------------------------------------------------------------------------------------------------------
# the endpoint wrapper shared by all routes


@dataclass
class Controls:
    """The ``x-fake-*`` test-control headers of one request (after ``x-fake-fail-times`` is applied)."""

    status: int = 0
    behavior: str = ""
    delay: float = 0.0
    gzip: bool = False
    chunks: int = DEFAULT_CHUNKS
    retry_after: float = 0.0
    error_message: str | None = None


async def _record(request: Request) -> bytes:
    raw = await request.body()
    request.app.state.requests_seen.append(
        {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers.raw},
            "body": raw,
        }
    )
    return raw


def _controls(request: Request) -> Controls:
    headers, state = request.headers, request.app.state
    treat = True
    if "x-fake-fail-times" in headers:  # only the first K requests per x-fake-key get the status / behaviour
        key = headers.get("x-fake-key", request.url.path)
        with state.lock:
            seen = state.fail_counters.get(key, 0)
            state.fail_counters[key] = seen + 1
        treat = seen < int(_header_num(request, "x-fake-fail-times", 0))
    return Controls(
        status=int(_header_num(request, "x-fake-status", 0)) if treat else 0,
        behavior=headers.get("x-fake-behavior", "").strip().lower() if treat else "",
        delay=_header_num(request, "x-fake-chunk-delay", 0.0),
        gzip=headers.get("x-fake-gzip", "").strip().lower() in ("1", "true", "yes"),
        chunks=max(0, int(_header_num(request, "x-fake-chunks", DEFAULT_CHUNKS))),
        retry_after=max(0.0, _header_num(request, "x-fake-retry-after", 0.0)),
        error_message=headers.get("x-fake-error-message"),
    )


def _json_response(payload: JSON, status: int, headers: dict[str, str], gzip: bool) -> Response:
    data = _dumps(payload).encode()
    if gzip:
        compressor = zlib.compressobj(wbits=31)
        data = compressor.compress(data) + compressor.flush()
        headers = {**headers, "content-encoding": "gzip"}
    return Response(data, status, headers, JSON_MEDIA)


def _error_response(provider: str, status: int, model: str, azure: bool, controls: Controls) -> Response:
    headers = _provider_headers(provider, status, azure)
    body = _error_body(provider, status, model)
    if controls.error_message is not None:  # e.g. a self-hosted server echoing the key it was sent
        error = body["error"]
        if isinstance(error, dict):
            error["message"] = controls.error_message
        else:
            body["error"] = controls.error_message
    if provider == "anthropic":
        body["request_id"] = headers["request-id"]
    if status == 429 or status >= 500:
        headers["retry-after"] = f"{controls.retry_after:g}"
        headers["retry-after-ms"] = str(max(1, int(controls.retry_after * 1000)))
    return _json_response(body, status, headers, controls.gzip)


def _endpoint(
    provider: str, handler: Handler, azure: bool = False, model_override: str | None = None
) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        raw = await _record(request)
        controls = _controls(request)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        model = model_override or str((body.get("model") if isinstance(body, dict) else None) or DEFAULT_MODEL)

        if controls.status >= 400:
            return _error_response(provider, controls.status, model, azure, controls)
        if not isinstance(body, dict):
            return _error_response(provider, 400, model, azure, controls)
        headers = _provider_headers(provider, 200, azure)
        if controls.behavior == "malformed-json":
            return Response(b'{"id": "x", "usage": {', 200, headers, JSON_MEDIA)
        if controls.behavior == "non-json":
            return Response(b"<html>oops</html>", 200, headers, "text/html")

        if controls.behavior == "big-body":
            pieces = _big_pieces(controls.chunks)
            ctx = Ctx(provider, request, body, model, pieces, sum(len(p) for p in pieces) // 4)
        else:
            ctx = Ctx(provider, request, body, model, reply_pieces(controls.chunks), controls.chunks)
        reply = handler(ctx)

        if isinstance(reply, dict):
            if controls.delay > 0:
                await asyncio.sleep(controls.delay)
            if controls.behavior not in ("truncate", "disconnect"):
                return _json_response(reply, 200, headers, controls.gzip)
            data = _dumps(reply).encode()  # a non-streamed body cut in half (and maybe the connection with it)
            frames, abort, media = [data[: len(data) // 2]], controls.behavior == "disconnect", JSON_MEDIA
        else:
            frames, abort = _select_frames(reply, controls.behavior)
            media = reply.media_type
            headers["cache-control"] = "no-cache"
        if controls.gzip:
            headers["content-encoding"] = "gzip"
        body_iter = _body_stream(frames, controls.delay, controls.gzip, abort)
        return StreamingResponse(body_iter, 200, headers, media)

    return endpoint


_GEMINI_METHODS: dict[str, Callable[[Ctx, bool], Reply]] = {
    "generateContent": lambda ctx, _sse: _gemini_generate(ctx, stream=False, sse=False),
    "streamGenerateContent": lambda ctx, sse: _gemini_generate(ctx, stream=True, sse=sse),
    "embedContent": lambda ctx, _sse: _gemini_embed(ctx, batch=False),
    "batchEmbedContents": lambda ctx, _sse: _gemini_embed(ctx, batch=True),
    "countTokens": lambda ctx, _sse: _gemini_count_tokens(ctx),
}


async def _gemini_dispatch(request: Request) -> Response:
    """``/v1beta/models/{model}:{method}`` -- the colon is part of the path segment, so split it here."""
    model, _, method = request.path_params["rest"].partition(":")
    build = _GEMINI_METHODS.get(method)
    if build is None:
        await _record(request)
        return _json_response(_error_body("gemini", 404, model), 404, _provider_headers("gemini", 404, False), False)
    sse = request.query_params.get("alt") == "sse"
    return await _endpoint("gemini", lambda ctx: build(ctx, sse), model_override=model)(request)


async def _not_found(request: Request) -> Response:
    await _record(request)
    message = f"Invalid URL ({request.method} {request.url.path})"
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return _json_response(body, 404, {}, False)


_ROUTES: list[tuple[str, str, Handler, bool]] = [
    ("/v1/chat/completions", "openai", _openai_chat, False),
    ("/v1/completions", "openai", _openai_completions, False),
    ("/v1/embeddings", "openai", _openai_embeddings, False),
    ("/v1/responses", "openai", _openai_responses, False),
    ("/openai/deployments/{deployment}/chat/completions", "openai", _azure_chat, True),
    ("/openai/deployments/{deployment}/embeddings", "openai", _azure_embeddings, True),
    ("/v1/messages", "anthropic", _anthropic_messages, False),
    ("/api/chat", "ollama", lambda ctx: _ollama_generate(ctx, chat=True), False),
    ("/api/generate", "ollama", lambda ctx: _ollama_generate(ctx, chat=False), False),
    ("/api/embed", "ollama", lambda ctx: _ollama_embed(ctx, legacy=False), False),
    ("/api/embeddings", "ollama", lambda ctx: _ollama_embed(ctx, legacy=True), False),
]


def create_app() -> Starlette:
    """The fake LLM ASGI app. ``app.state.requests_seen`` lists every request received."""
    routes = [
        Route(path, _endpoint(provider, handler, azure), methods=["POST"]) for path, provider, handler, azure in _ROUTES
    ]
    routes.append(Route("/v1beta/models/{rest:path}", _gemini_dispatch, methods=["POST"]))
    routes.append(Route("/{path:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
    app = Starlette(routes=routes)
    app.state.requests_seen = []
    app.state.fail_counters = {}
    app.state.lock = threading.Lock()
    return app


# --------------------------------------------------------------------------------------------------------------------
# running it


class FakeLLMServer:
    """Runs create_app() under uvicorn on 127.0.0.1 (port 0 = free port) in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.app = create_app()
        self.requests_seen: list[dict[str, Any]] = self.app.state.requests_seen
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLLMServer:
        """Start serving; returns once the server accepts connections."""
        if self._server is not None:
            return self
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        _quiet_simulated_disconnects()
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-llm-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"fake LLM server failed to start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("fake LLM server did not start within 15s")
            time.sleep(0.005)
        self._server, self._thread = server, thread
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}"
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)

    def reset(self) -> None:
        """Forget the requests seen and the ``x-fake-fail-times`` counters."""
        self.requests_seen.clear()
        with self.app.state.lock:
            self.app.state.fail_counters.clear()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the fake LLM until interrupted: ``python -m llm_monitor_mw.fake_llm [--host H] [--port P | PORT]``."""
    parser = argparse.ArgumentParser(
        prog="python -m llm_monitor_mw.fake_llm",
        description="A local fake LLM server speaking the OpenAI, Anthropic, Gemini and Ollama wire formats, for"
        " tests, benchmarks and demos. Requests may steer it with x-fake-* headers (see the module's docstring).",
    )
    parser.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help="TCP port (same as --port)")
    parser.add_argument("--port", type=int, default=None, help="TCP port; 0 picks a free one (default: 8700)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.port is not None and args.port_arg is not None and args.port != args.port_arg:
        parser.error("give the port once: PORT or --port")
    port = next((p for p in (args.port, args.port_arg) if p is not None), 8700)
    if not 0 <= port <= 65535:
        parser.error(f"port {port} is not between 0 and 65535")
    try:
        server = FakeLLMServer(host=args.host, port=port).start()
    except RuntimeError as exc:  # e.g. the port is taken (uvicorn has logged why)
        print(f"fake LLM: error: {exc}", file=sys.stderr)
        return 1
    print(f"fake LLM serving on {server.base_url} (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
