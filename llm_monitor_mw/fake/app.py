"""The fake LLM as an ASGI app: the ``x-fake-*`` test controls, the provider routes, and how an answer is rendered
(behaviours that mangle it, delays between events, gzip)."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import anthropic, gemini, ollama, openai
from .common import (
    DEFAULT_CHUNKS,
    DEFAULT_MODEL,
    JSON,
    JSON_MEDIA,
    Ctx,
    Handler,
    SimulatedDisconnect,
    StreamPlan,
    big_pieces,
    dumps,
    reply_pieces,
)

_PROVIDERS: dict[str, ModuleType] = {m.NAME: m for m in (openai, anthropic, gemini, ollama)}


def _error_body(provider: str, status: int, model: str) -> JSON:
    return _PROVIDERS[provider].error_body(status, model)


def _provider_headers(provider: str, status: int, azure: bool) -> dict[str, str]:
    return _PROVIDERS[provider].response_headers(status, azure)


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
    tool_calls: int | None = None


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
        tool_calls=int(_header_num(request, "x-fake-tool-calls", 0)) if "x-fake-tool-calls" in headers else None,
    )


def _json_response(payload: JSON, status: int, headers: dict[str, str], gzip: bool) -> Response:
    data = dumps(payload).encode()
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
            pieces = big_pieces(controls.chunks)
            ctx = Ctx(provider, request, body, model, pieces, sum(len(p) for p in pieces) // 4)
        else:
            ctx = Ctx(provider, request, body, model, reply_pieces(controls.chunks), controls.chunks)
        ctx.forced_tools = controls.tool_calls
        reply = handler(ctx)

        if isinstance(reply, dict):
            if controls.delay > 0:
                await asyncio.sleep(controls.delay)
            if controls.behavior not in ("truncate", "disconnect"):
                return _json_response(reply, 200, headers, controls.gzip)
            data = dumps(reply).encode()  # a non-streamed body cut in half (and maybe the connection with it)
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


async def _gemini_dispatch(request: Request) -> Response:
    """``/v1beta/models/{model}:{method}`` -- the colon is part of the path segment, so split it here."""
    model, _, method = request.path_params["rest"].partition(":")
    build = gemini.METHODS.get(method)
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


def create_app() -> Starlette:
    """The fake LLM ASGI app. ``app.state.requests_seen`` lists every request received."""
    routes = [
        Route(path, _endpoint(module.NAME, handler, azure), methods=["POST"])
        for module in (openai, anthropic, ollama)
        for path, handler, azure in module.ROUTES
    ]
    routes.append(Route("/v1beta/models/{rest:path}", _gemini_dispatch, methods=["POST"]))
    routes.append(Route("/{path:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
    app = Starlette(routes=routes)
    app.state.requests_seen = []
    app.state.fail_counters = {}
    app.state.lock = threading.Lock()
    return app
