"""The fake Ollama native API (``/api/*``; its OpenAI-compatible ``/v1`` routes are the OpenAI module's): chat and
generate, NDJSON-streamed by default, and embeddings."""

from __future__ import annotations

from .common import (
    JSON,
    NDJSON_MEDIA,
    Ctx,
    Handler,
    Reply,
    StreamPlan,
    count_items,
    embedding_inputs,
    function_tools,
    last_role,
    ndjson_line,
    now_rfc3339,
    tool_calls,
    vector,
)

NAME = "ollama"


def _stats(ctx: Ctx, prompt: int) -> JSON:
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


def generate(ctx: Ctx, chat: bool) -> Reply:
    body = ctx.body
    prompt = ctx.prompt_tokens(count_items(body.get("messages")) if chat else 1)
    calls = (
        tool_calls(ctx, function_tools(body.get("tools")), last_role(body.get("messages")) == "user", "call_", 8)
        if chat
        else []
    )
    # Ollama's tool calls: whole, arguments as an object, each numbered (function.index), in one message.
    wire_calls = [
        {"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}} for i, c in enumerate(calls)
    ]

    def line(text: str) -> JSON:
        data: JSON = {"model": ctx.model, "created_at": now_rfc3339()}
        if chat:
            data["message"] = {"role": "assistant", "content": text}
        else:
            data["response"] = text
        return data

    def final(text: str) -> JSON:
        data = {**line(text), **_stats(ctx, prompt)}
        if not chat:
            data["context"] = [1, 2, 3]
        return data

    if body.get("stream", True) is False:
        if calls:
            data = final("")
            data["message"]["tool_calls"] = wire_calls
            return data
        return final(ctx.text)
    plan = StreamPlan(
        NDJSON_MEDIA,
        error_frame=lambda _pos: ndjson_line({"error": "model runner has unexpectedly stopped"}),
        garbage=(b"{not json\n",),
    )
    if calls:
        tool_line = line("")
        tool_line["message"]["tool_calls"] = wire_calls
        plan.add("content", ndjson_line({**tool_line, "done": False}))
        plan.add("tail", ndjson_line(final("")))
        return plan
    for piece in ctx.pieces:
        plan.add("content", ndjson_line({**line(piece), "done": False}))
    plan.add("tail", ndjson_line(final("")))
    return plan


def embed(ctx: Ctx, legacy: bool) -> Reply:
    if legacy:  # /api/embeddings: one prompt, one vector
        return {"embedding": vector(0)}
    inputs = embedding_inputs(ctx.body.get("input"))
    return {
        "model": ctx.model,
        "embeddings": [vector(k) for k in range(len(inputs))],
        "total_duration": 14_143_917,
        "load_duration": 1_019_500,
        "prompt_eval_count": ctx.prompt_tokens(len(inputs)),
    }


def error_body(status: int, model: str) -> JSON:
    """Ollama's error body for ``status``."""
    return {
        "error": f'model "{model}" not found, try pulling it first' if status == 404 else f"simulated error {status}"
    }


def response_headers(status: int, azure: bool) -> dict[str, str]:
    """Ollama sends no headers of its own."""
    return {}


ROUTES: list[tuple[str, Handler, bool]] = [
    ("/api/chat", lambda ctx: generate(ctx, chat=True), False),
    ("/api/generate", lambda ctx: generate(ctx, chat=False), False),
    ("/api/embed", lambda ctx: embed(ctx, legacy=False), False),
    ("/api/embeddings", lambda ctx: embed(ctx, legacy=True), False),
]
"""``(path, handler, azure)`` of each route, all ``POST``."""
