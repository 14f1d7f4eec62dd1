"""A deterministic upstream for the proxy tests: fixed bytes (so direct and proxied answers can be compared byte
for byte), the request it saw, and streams a test can hold and release.

Paths (any method):

* ``/v1/chat/completions``: a fixed OpenAI chat completion (``CHAT``), or, when the body asks for a stream, the
  fixed SSE frames ``FRAMES`` one chunk each; ``x-test-hold: 1`` holds the last frame until :meth:`release`;
  ``x-test-gzip: 1`` gzips the body (a stream incrementally, one sync-flush per frame); ``x-test-status: N``
  answers ``N`` with a fixed OpenAI error body.
* ``.../echo...``: the request as JSON (method, raw path, query, headers, body as latin-1).
* ``/upload``: reads the body chunk by chunk, noting each chunk as it arrives (:attr:`upload_chunks`).

Every answer carries fixed headers (``date``, ``server``, a repeated ``set-cookie``) and a hop-by-hop pair
(``connection: x-hop``, ``x-hop: 1``, ``keep-alive``) that a proxy must remove.
"""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from typing import Any

CHAT = json.dumps(
    {
        "id": "chatcmpl-fixed",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
).encode()

FRAMES = [
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",'
    + b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n' % word
    for word in (b"One", b" two", b" three", b" four")
] + [
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":4,"total_tokens":11}}\n\n',
    b"data: [DONE]\n\n",
]

ERROR = b'{"error":{"message":"The server is overloaded.","type":"server_error","code":null}}'

FIXED_HEADERS = [
    (b"date", b"Tue, 01 Dec 2026 12:00:00 GMT"),
    (b"server", b"test-upstream"),
    (b"x-request-id", b"req_fixed"),
    (b"set-cookie", b"a=1; Path=/"),
    (b"set-cookie", b"b=2; Path=/"),
    (b"connection", b"x-hop"),
    (b"x-hop", b"1"),
    (b"keep-alive", b"timeout=5"),
]
HOP_BY_HOP = {b"connection", b"x-hop", b"keep-alive", b"transfer-encoding"}


class Upstream:
    """The ASGI app (see the module docstring); state is shared with the test thread."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.upload_chunks: list[bytes] = []
        self.first_upload_chunk = threading.Event()
        self.held = threading.Event()  # a held stream has sent all but its last frame
        self.disconnected = threading.Event()  # a client went away during a held stream
        self._release = threading.Event()

    def release(self) -> None:
        """Let held streams send their last frame."""
        self._release.set()

    def reset(self) -> None:
        self.seen.clear()
        self.upload_chunks.clear()
        for event in (self.first_upload_chunk, self.held, self.disconnected, self._release):
            event.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        path: str = scope["path"]
        if path == "/upload":
            await self._upload(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1"),
        }
        self.seen.append(request)
        if "/echo" in path:
            await _answer(send, 200, [(b"content-type", b"application/json")], [json.dumps(request).encode()])
            return
        status = int(headers.get(b"x-test-status", b"200"))
        gzip = headers.get(b"x-test-gzip") == b"1"
        if status >= 400:
            await _answer(send, status, [(b"content-type", b"application/json")], [ERROR], gzip)
        elif b'"stream":true' in body.replace(b" ", b""):
            await self._stream(send, receive, gzip, hold=headers.get(b"x-test-hold") == b"1")
        else:
            await _answer(send, 200, [(b"content-type", b"application/json")], [CHAT], gzip)

    async def _stream(self, send: Any, receive: Any, gzip: bool, hold: bool) -> None:
        compressor = zlib.compressobj(wbits=31) if gzip else None
        extra = [(b"content-encoding", b"gzip")] if gzip else []
        headers = [(b"content-type", b"text/event-stream"), *extra, *FIXED_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, frame in enumerate(FRAMES):
            if hold and i == len(FRAMES) - 1:
                self.held.set()
                while not self._release.is_set():
                    try:
                        async with asyncio.timeout(0.005):
                            if (await receive())["type"] == "http.disconnect":
                                self.disconnected.set()
                                return
                    except TimeoutError:
                        pass
            data = compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH) if compressor else frame
            await send({"type": "http.response.body", "body": data, "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": compressor.flush() if compressor else b""})

    async def _upload(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message.get("body"):
                self.upload_chunks.append(message["body"])
                self.first_upload_chunk.set()
            if not message.get("more_body"):
                break
        await _answer(send, 200, [(b"content-type", b"text/plain")], [b"%d" % len(self.upload_chunks)])


async def _answer(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes], gzip: bool = False
) -> None:
    body = b"".join(chunks)
    if gzip:
        compressor = zlib.compressobj(wbits=31)
        body = compressor.compress(body) + compressor.flush()
        headers = [*headers, (b"content-encoding", b"gzip")]
    headers = [*headers, (b"content-length", b"%d" % len(body)), *FIXED_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
