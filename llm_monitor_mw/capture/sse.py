"""Stream decoding: content-encoding, SSE and NDJSON framing, and the first-content test used for TTFT.

The transport calls only :func:`make_decoder` and :data:`CONTENT_MARK` on the caller's path; the event
decoders run later on the writer thread over the bounded head and tail the transport kept.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

# A JSON string member that carries generated content and is not empty: the first such chunk marks the first
# token (OpenAI deltas, Responses deltas, Anthropic text/thinking/tool deltas, Gemini parts, Ollama messages).
CONTENT_MARK = re.compile(
    rb'"(?:content|text|delta|arguments|partial_json|thinking|reasoning_content|reasoning|response)"\s*:\s*"[^"]'
)


MAX_EVENT_BYTES = 1024 * 1024
"""The longest SSE event / NDJSON line that is JSON-decoded; longer ones are skipped and counted.

Generous because OpenAI's ``response.completed`` repeats the whole response (output text, instructions, tools);
the stream windows the transport keeps are no larger than this anyway (see ``pending.TAIL_BYTES``)."""

Step = Callable[[bytes, int], bytes]
"""One content-coding undone incrementally: ``step(data, limit)`` decodes ``data`` and returns the output, whose
length exceeds ``limit - 1`` only when the output did not fit (the output beyond ``limit`` may be missing)."""


class Decoder:
    """An incremental ``Content-Encoding`` decoder that produces at most ``budget`` bytes in total.

    Used on a *copy* of the stream for parsing only; the caller always gets the raw bytes. Each call decodes at
    most the budget that is left (zlib's ``max_length``, brotli's ``output_buffer_limit``, zstd output pieces
    counted as they come), so a small body that inflates to gigabytes costs the budget and no more. Once the
    budget is spent, :attr:`over` is true and every later call returns ``b""`` without decoding.
    """

    __slots__ = ("_steps", "budget", "left", "over")

    def __init__(self, steps: list[Step], budget: int) -> None:
        self._steps = steps
        self.budget = budget
        self.left = budget
        self.over = False

    def __call__(self, data: bytes) -> bytes:
        left = self.left
        if left < 0:
            return b""
        steps = self._steps
        for step in steps:  # several codings are undone in turn, each bounded by the same budget
            data = step(data, left + 1)
            if len(data) > left:
                self.left = -1
                self.over = True
                self._steps = []  # drop the decompressors and their buffered input
                # Not trimmed to the budget (that would copy it): the caller keeps bounded windows of it, or
                # drops it. Output of an inner coding is still encoded: nothing to keep.
                return data if step is steps[-1] else b""
        self.left = left - len(data)
        return data


def make_decoder(encoding: str, budget: int) -> Decoder | None:
    """A bounded decoder for a ``Content-Encoding`` value (``None`` if a needed library is missing)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
    steps: list[Step] = []
    for coding in reversed(codings):  # applied in order, so undone in reverse
        step = _one_decoder(coding)
        if step is None:
            return None
        steps.append(step)
    return Decoder(steps, budget)


def _one_decoder(coding: str) -> Step | None:
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if coding == "deflate":
        return _DeflateDecoder().decode
    if coding == "br":
        return _brotli_step()
    if coding == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return None
        return _ZstdStep(zstandard).decode
    return None


class _DeflateDecoder:
    """``deflate`` is zlib-wrapped by the spec but raw in practice; accept both, as browsers and httpx do."""

    def __init__(self) -> None:
        self._first = True
        self._obj = zlib.decompressobj()

    def decode(self, data: bytes, limit: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._obj.decompress(data, limit)
            except zlib.error:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data, limit)


_brotli_bounded: bool | None = None  # whether Decompressor.process takes output_buffer_limit (brotli >= 1.1)


def _brotli_step() -> Step | None:
    global _brotli_bounded
    try:
        import brotli  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            import brotlicffi as brotli  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return None
    decompressor = brotli.Decompressor()
    process = getattr(decompressor, "process", None)
    if process is None:  # brotlicffi
        unbounded = decompressor.decompress
        return lambda data, limit: unbounded(data)
    if _brotli_bounded is None:
        try:
            brotli.Decompressor().process(b"", output_buffer_limit=1)
            _brotli_bounded = True
        except TypeError:
            _brotli_bounded = False
    if _brotli_bounded:
        return lambda data, limit: process(data, output_buffer_limit=limit)
    # An old brotli cannot bound one call's output: the budget then stops it after the call that spends it.
    return lambda data, limit: process(data)


class _Full(Exception):
    """Raised inside zstandard's writer callback to stop decoding once the limit is reached."""


class _ZstdStep:
    """zstd with bounded output: ``ZstdDecompressionObj.decompress`` has no ``max_length``, but a stream writer
    hands its output over in ``write_size`` pieces, and the sink stops it when the limit is reached."""

    __slots__ = ("_limit", "_parts", "_size", "_writer")

    WRITE_SIZE = 64 * 1024

    def __init__(self, zstandard: Any) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = 0
        self._writer = zstandard.ZstdDecompressor().stream_writer(self, write_size=self.WRITE_SIZE)

    def write(self, piece: bytes) -> int:
        self._parts.append(piece)
        self._size += len(piece)
        if self._size >= self._limit:
            raise _Full
        return len(piece)

    def decode(self, data: bytes, limit: int) -> bytes:
        self._parts, self._size, self._limit = [], 0, limit
        with contextlib.suppress(_Full):
            self._writer.write(data)
        parts = self._parts
        self._parts = []
        return parts[0] if len(parts) == 1 else b"".join(parts)


class StreamDecodeStats:
    """Counts of what could not be decoded, for the record's error note."""

    __slots__ = ("bad", "done_marker", "oversized")

    def __init__(self) -> None:
        self.bad = 0
        self.oversized = 0
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
        if len(block) > MAX_EVENT_BYTES:
            stats.oversized += 1
            continue
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
        if len(line) > MAX_EVENT_BYTES:
            stats.oversized += 1
            continue
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            stats.bad += 1
