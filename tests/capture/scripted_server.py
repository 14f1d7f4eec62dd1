"""A local HTTP server whose answers a test scripts: status, headers and body chunks (with pauses between them).

Served by uvicorn on 127.0.0.1 in a thread, so what the client sees is real HTTP framing over a real socket:
hostile bodies and headers, streams paused between events, large compressed bodies sent chunk by chunk.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Chunk = bytes | float  # a float is a pause, in seconds, before the next chunk


@dataclass
class Reply:
    """One scripted answer."""

    chunks: Iterable[Chunk] = ()
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "application/json")])


def json_reply(payload: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    """A JSON body (``NaN``/``Infinity`` allowed: hostile servers send them)."""
    return Reply([json.dumps(payload).encode()], status, [("content-type", "application/json"), *(headers or [])])


def sse_reply(
    events: Iterable[Any], headers: list[tuple[str, str]] | None = None, done: bool = False, named: bool = False
) -> Reply:
    """An SSE stream with one chunk per event; an item that is a float is a pause, bytes are sent as they are.

    ``named``: each event also gets an ``event:`` line with its ``type`` (Anthropic and Responses streams do).
    """
    chunks: list[Chunk] = []
    for event in events:
        if isinstance(event, float | bytes):
            chunks.append(event)
        else:
            name = f"event: {event['type']}\n".encode() if named and isinstance(event, dict) else b""
            chunks.append(name + b"data: " + json.dumps(event).encode() + b"\n\n")
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return Reply(chunks, 200, [("content-type", "text/event-stream"), *(headers or [])])


def ndjson_reply(lines: Iterable[Any]) -> Reply:
    return Reply([json.dumps(line).encode() + b"\n" for line in lines], 200, [("content-type", "application/x-ndjson")])


class ScriptedApp:
    """A raw ASGI app answering every request with ``script(path, body)`` (default: the current :attr:`reply`)."""

    def __init__(self) -> None:
        self.reply = Reply([b"{}"])
        self.script: Callable[[str, bytes], Reply] | None = None
        self.requests: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append((scope["path"], body))
        reply = self.script(scope["path"], body) if self.script is not None else self.reply
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        try:
            pending: bytes | None = None  # held back one step so the last chunk goes out with more_body=False
            for chunk in reply.chunks:
                if isinstance(chunk, float):
                    if pending is not None:
                        await send({"type": "http.response.body", "body": pending, "more_body": True})
                        pending = None
                    await asyncio.sleep(chunk)
                else:
                    if pending is not None:
                        await send({"type": "http.response.body", "body": pending, "more_body": True})
                    pending = chunk
            await send({"type": "http.response.body", "body": pending or b""})
        except OSError:  # the client went away (it closed the stream early): that is the test's point
            pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn until the block ends; yields its base URL (``http://127.0.0.1:PORT``)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="scripted-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
