"""Bounded work and memory on the monitor's side of the tee: decoding for parsing stops at ``max_body_bytes``
decoded bytes, and the stream windows kept for parsing are bounded in bytes, whatever the chunk sizes.

The caller's own read must cost the same with and without the monitor: a ~1 MB gzip body that inflates to 1 GiB,
read raw (as a proxy would) by a plain and by a monitored httpx client, each in its own process.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.pending import HEAD_BYTES, TAIL_BYTES
from llm_monitor_mw.capture.sse import MAX_EVENT_BYTES, make_decoder
from tests.capture.scripted_server import Reply, ScriptedApp, serve
from tests.conftest import only_record, records

ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30
MiB = 1 << 20
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def gzip_bomb(segment: bytes, total: int, prefix: bytes = b"") -> bytes:
    """A valid gzip member of ``prefix`` + ``segment`` repeated to ``total`` bytes, built without inflating it:
    each segment is deflated after a full flush, so every repetition compresses to the same bytes."""
    assert total % len(segment) == 0
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(segment) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(total // len(segment)):
        crc = zlib.crc32(segment, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (len(prefix) + total) & 0xFFFFFFFF)
    return header + head + block * (total // len(segment)) + end + trailer


def chunked(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_gzip_bomb_helper_is_a_real_gzip() -> None:
    data = gzip_bomb(b" " * (64 * 1024), 8 * MiB, prefix=b"{")
    assert gzip.decompress(data) == b"{" + b" " * (8 * MiB)
    assert len(data) < 16 * 1024


SSE_EVENT = b'data: {"type":"ping"}\n\n'
SSE_SEGMENT = SSE_EVENT + b":" + b" " * (MiB - len(SSE_EVENT) - 3) + b"\n\n"  # an event and a long comment
BOMBS = {
    "json": (b"{" + b" " * (MiB - 1), b"application/json"),
    "sse": (SSE_SEGMENT, b"text/event-stream"),
}


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[tuple[ScriptedApp, str]]:
    app = ScriptedApp()
    with serve(app) as url:
        yield app, url


def run_reader(url: str, mode: str, db: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "tests.capture.bounded_reader", url, mode, str(db)],
        capture_output=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("kind", list(BOMBS))
def test_a_gzip_bomb_costs_the_caller_nothing(kind: str, bomb_server: tuple[ScriptedApp, str], tmp_path: Path) -> None:
    segment, ctype = BOMBS[kind]
    bomb = gzip_bomb(segment, GiB)
    assert len(bomb) < 2 * MiB  # ~1 MB on the wire, 1 GiB once inflated
    app, url = bomb_server
    small = Reply([gzip.compress(b'{"usage":{"prompt_tokens":1}}')], 200, [("content-type", "application/json")])
    small.headers.append(("content-encoding", "gzip"))
    big = Reply(chunked(bomb), 200, [("content-type", ctype.decode()), ("content-encoding", "gzip")])
    app.script = lambda path, body: big if path.startswith("/bomb/") else small
    try:
        plain = run_reader(url, "plain", tmp_path / "plain.db")
        monitored = run_reader(url, "monitored", tmp_path / "monitored.db")
    finally:
        app.script = None
    assert plain["raw_bytes"] == monitored["raw_bytes"] == len(bomb)  # the caller got every raw byte
    assert monitored["seconds"] <= plain["seconds"] * 1.5 + 0.5, (plain, monitored)
    assert monitored["peak_kib"] <= plain["peak_kib"] + 64 * 1024, (plain, monitored)
    with Monitor(tmp_path / "monitored.db") as monitor:
        warm, row = records(monitor)
    assert warm["input_tokens"] == 1 and warm["error"] is None
    assert row["response_bytes"] == len(bomb) and row["status_code"] == 200
    limit = 16 * MiB
    if kind == "json":
        assert row["error"] == f"response larger than max_body_bytes={limit} decoded bytes; not parsed"
    else:
        assert f"response stream larger than max_body_bytes={limit} decoded bytes" in row["error"]
        assert "truncated" not in row["error"]  # what was cut is said once, by the limit's note


def compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return pytest.importorskip("brotli").compress(data, quality=5)
    return pytest.importorskip("zstandard").ZstdCompressor().compress(data)


# br and zstd need the optional `compression` extra (absent from the legacy-SDK venv): those cases skip there.
ENCODINGS = ["gzip", "deflate", "br", "zstd"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_decoder_is_bounded_by_its_budget(encoding: str) -> None:
    """One call on a small piece of a 64 MiB bomb yields at most about the budget, and nothing after it."""
    data = compress(encoding, b" " * (64 * MiB))
    decoder = make_decoder(encoding, MiB)
    assert decoder is not None
    out = [decoder(piece) for piece in chunked(data, 4096)]
    assert decoder.over
    assert MiB < sum(map(len, out)) <= 2 * MiB + 64 * 1024  # brotli's output buffer may overshoot its limit
    assert decoder(data[:100]) == b""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_decoder_gives_back_the_exact_bytes_within_budget(encoding: str) -> None:
    data = b"".join(b'data: {"n":%d}\n\n' % i for i in range(5000))
    packed = compress(encoding, data)
    exact = make_decoder(encoding, len(data))
    assert exact is not None
    assert b"".join(exact(piece) for piece in chunked(packed, 7)) == data and not exact.over
    short = make_decoder(encoding, len(data) - 1)
    assert short is not None
    for piece in chunked(packed, 7):
        short(piece)
    assert short.over


def zstd_frames(data: bytes) -> bytes:
    """Two zstd frames back to back (a stream compressed in parts)."""
    zstandard = pytest.importorskip("zstandard")
    half = len(data) // 2
    return zstandard.ZstdCompressor().compress(data[:half]) + zstandard.ZstdCompressor().compress(data[half:])


def test_zstd_multiple_frames() -> None:
    data = b"x" * 1000 + b"y" * 1000
    frames = zstd_frames(data)  # skips without zstandard
    decoder = make_decoder("zstd", 10_000)
    assert decoder is not None and decoder(frames) == data


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("streamed", [False, True], ids=["body", "sse"])
def test_compressed_bombs_through_a_monitor(
    encoding: str, streamed: bool, bomb_server: tuple[ScriptedApp, str], tmp_path: Path
) -> None:
    """Every encoding over a real socket: the caller gets the raw bytes, the record says why it is not parsed."""
    app, url = bomb_server
    plain = (
        (SSE_EVENT * 2000 + b"data: [DONE]\n\n") if streamed else json.dumps({"usage": {"prompt_tokens": 3}}).encode()
    )
    ctype = "text/event-stream" if streamed else "application/json"
    unit = SSE_EVENT if streamed else b" "
    packed_bomb = compress(encoding, unit * (48 * MiB // len(unit)))
    with (
        Monitor(tmp_path / "m.db", max_body_bytes=4 * MiB) as monitor,
        httpx.Client(transport=monitor.transport()) as client,
    ):
        for body in (plain, packed_bomb):
            packed = compress(encoding, body) if body is plain else body
            app.reply = Reply(
                chunked(packed, 16 * 1024), 200, [("content-type", ctype), ("content-encoding", encoding)]
            )
            start = time.perf_counter()
            with client.stream("POST", url + "/v1/chat/completions", json=CHAT) as response:
                raw = b"".join(response.iter_raw())
            assert raw == packed and time.perf_counter() - start < 5
        small, big = records(monitor)
    assert small["error"] is None, small["error"]
    if not streamed:
        assert small["input_tokens"] == 3
    assert big["response_bytes"] == len(packed_bomb)
    assert f"max_body_bytes={4 * MiB} decoded bytes" in big["error"]


# ---- byte-bounded stream windows ---------------------------------------------------------------------------------


class LazyStream(httpx.SyncByteStream):
    """Chunks produced on demand, so the test's own memory stays flat."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def lazy_transport(make: Any, ctype: str = "text/event-stream") -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": ctype}, stream=LazyStream(make()))
    )


START = b'data: {"type":"message_start","message":{"model":"claude-haiku-4-5","usage":{"input_tokens":7}}}\n\n'
END = (
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}\n\n'
    b'data: {"type":"message_stop"}\n\n'
)


def giant_line(total: int, piece: int) -> Iterator[bytes]:
    """message_start, then one SSE "line" of ``total`` bytes in ``piece``-byte chunks, then the end events."""
    yield START
    yield b'data: {"type":"ping","pad":"'
    for _ in range(total // piece):
        yield b" " * piece  # a new object each time, as a socket read gives
    yield b'"}\n\n'
    yield END


@pytest.mark.parametrize(("total", "piece"), [(64 * MiB, 64 * 1024), (4 * MiB, 16 * MiB), (2 * MiB, 16)])
def test_a_giant_line_is_never_kept(total: int, piece: int, monitor: Monitor) -> None:
    """Bounded in bytes whatever the chunk sizes (large, huge, tiny): usage at both ends still arrives."""
    piece = min(piece, total)
    with httpx.Client(transport=monitor.transport(inner=lazy_transport(lambda: giant_line(total, piece)))) as client:
        tracemalloc.start()
        try:
            with client.stream("POST", "http://anthropic.test/v1/messages", json=CHAT) as response:
                for _ in response.iter_raw():
                    pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The two windows, plus a chunk in flight and its slice (and small change).
    assert peak < HEAD_BYTES + TAIL_BYTES + 2 * piece + 512 * 1024, peak
    row = only_record(monitor)
    assert (row["input_tokens"], row["output_tokens"], row["finish_reason"]) == (7, 9, "end_turn")
    assert row["error"] is None, row["error"]  # the cut line is skipped at both window edges, not "malformed"


def test_an_event_over_the_limit_is_skipped_not_parsed(monitor: Monitor) -> None:
    """A whole event larger than MAX_EVENT_BYTES, inside the kept bytes, is counted and skipped."""
    big = b'data: {"pad":"' + b"x" * (MAX_EVENT_BYTES + 10) + b'"}\n\n'
    assert len(START) + len(big) + len(END) < HEAD_BYTES + TAIL_BYTES  # nothing dropped: one contiguous window
    transport = lazy_transport(lambda: iter([START, big, END]))
    with httpx.Client(transport=monitor.transport(inner=transport)) as client:
        client.post("http://anthropic.test/v1/messages", json=CHAT)
    row = only_record(monitor)
    assert row["input_tokens"] == 7 and row["output_tokens"] == 9
    assert row["error"] == f"1 stream event(s) over {MAX_EVENT_BYTES} bytes skipped"


def test_ndjson_lines_are_bounded_too(monitor: Monitor) -> None:
    def lines() -> Iterator[bytes]:
        yield b'{"model":"llama3.2","message":{"content":"hi"},"done":false}\n'
        yield b'{"pad":"'
        for _ in range(256):
            yield b"z" * (64 * 1024)
        yield b'"}\n{"model":"llama3.2","done":true,"prompt_eval_count":3,"eval_count":4}\n'

    transport = lazy_transport(lines, "application/x-ndjson")
    with httpx.Client(transport=monitor.transport(inner=transport)) as client:
        client.post("http://localhost:11434/api/chat", json={"model": "llama3.2", "messages": []})
    row = only_record(monitor)
    assert (row["input_tokens"], row["output_tokens"], row["streamed"]) == (3, 4, True)
    assert row["error"] is None, row["error"]
