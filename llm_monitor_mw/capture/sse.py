"""Stream decoding: content-encoding, SSE and NDJSON framing, and the first-content test used for TTFT.

The transport calls only :func:`make_decoder` and :data:`CONTENT_MARK` on the caller's path; the event
decoders run later on the writer thread over the bounded head and tail the transport kept.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

Decoder = Callable[[bytes], bytes]

# A JSON string member that carries generated content and is not empty: the first such chunk marks the first
# token (OpenAI deltas, Responses deltas, Anthropic text/thinking/tool deltas, Gemini parts, Ollama messages).
CONTENT_MARK = re.compile(
    rb'"(?:content|text|delta|arguments|partial_json|thinking|reasoning_content|reasoning|response)"\s*:\s*"[^"]'
)


def make_decoder(encoding: str) -> Decoder | None:
    """An incremental decoder for a ``Content-Encoding`` (``None`` if the needed library is missing).

    Used on a *copy* of the stream for parsing only; the caller always gets the raw bytes.
    """
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
    steps: list[Decoder] = []
    for coding in reversed(codings):  # applied in order, so undone in reverse
        step = _one_decoder(coding)
        if step is None:
            return None
        steps.append(step)
    if not steps:
        return lambda data: data
    if len(steps) == 1:
        return steps[0]

    def chain(data: bytes) -> bytes:
        for step in steps:
            data = step(data)
        return data

    return chain


def _one_decoder(coding: str) -> Decoder | None:
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if coding == "deflate":
        return _DeflateDecoder().decode
    if coding == "br":
        try:
            import brotli  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            try:
                import brotlicffi as brotli  # type: ignore[import-not-found,no-redef,unused-ignore]
            except ImportError:
                return None
        decompressor = brotli.Decompressor()
        return getattr(decompressor, "process", None) or decompressor.decompress
    if coding == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return None
        return zstandard.ZstdDecompressor().decompressobj().decompress
    return None


class _DeflateDecoder:
    """``deflate`` is zlib-wrapped by the spec but raw in practice; accept both, as browsers and httpx do."""

    def __init__(self) -> None:
        self._first = True
        self._obj = zlib.decompressobj()

    def decode(self, data: bytes) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._obj.decompress(data)
            except zlib.error:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data)


class StreamDecodeStats:
    """Counts of what could not be decoded, for the record's error note."""

    __slots__ = ("bad", "done_marker")

    def __init__(self) -> None:
        self.bad = 0
        self.done_marker = False


def sse_events(text: str, stats: StreamDecodeStats, *, skip_first: bool, skip_last: bool) -> Iterator[Any]:
    """JSON ``data`` payloads of the SSE events in ``text``.

    ``skip_first``/``skip_last`` drop an event cut in two where the kept head or tail window begins or ends.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = text.split("\n\n")
    if skip_first and blocks:
        blocks = blocks[1:]
    if skip_last and blocks:
        blocks = blocks[:-1]
    for block in blocks:
        data_lines = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if not data_lines:
            continue
        data = "\n".join(data_lines)
        if data.strip() == "[DONE]":
            stats.done_marker = True
            continue
        try:
            yield json.loads(data)
        except ValueError:
            stats.bad += 1


def ndjson_events(text: str, stats: StreamDecodeStats, *, skip_first: bool, skip_last: bool) -> Iterator[Any]:
    """Objects of the newline-delimited JSON lines in ``text`` (same windowing rules as :func:`sse_events`)."""
    lines = text.split("\n")
    if skip_first and lines:
        lines = lines[1:]
    if skip_last and lines:
        lines = lines[:-1]
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            stats.bad += 1
