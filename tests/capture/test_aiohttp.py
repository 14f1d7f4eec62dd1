"""aiohttp capture: the client middleware and ``instrument_aiohttp()`` against the bundled fake server (real sockets).

Every test compares with a plain (unmonitored) session where the caller's view matters: the bytes, status,
headers and exceptions must be the same with and without the monitor.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.streams import StreamReader

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.aiohttp import CaptureMiddleware, _taps
from llm_monitor_mw.capture.transport import CallRefused
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello"}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
_IDS = re.compile(rb'"(id|created|system_fingerprint)":("[^"]*"|\d+)')
Reader = Callable[[aiohttp.ClientResponse], Awaitable[bytes]]


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    return await resp.read()


async def _readany(resp: aiohttp.ClientResponse) -> bytes:
    out = b""
    while chunk := await resp.content.readany():
        out += chunk
    return out


async def _iter_chunked(resp: aiohttp.ClientResponse) -> bytes:
    return b"".join([c async for c in resp.content.iter_chunked(7)])


async def _iter_any(resp: aiohttp.ClientResponse) -> bytes:
    return b"".join([c async for c in resp.content.iter_any()])


async def _readline(resp: aiohttp.ClientResponse) -> bytes:  # how SSE clients read
    return b"".join([line async for line in resp.content])


async def _text(resp: aiohttp.ClientResponse) -> bytes:
    return (await resp.text()).encode()


READERS: dict[str, Reader] = {
    "read": _read,
    "readany": _readany,
    "iter_chunked": _iter_chunked,
    "iter_any": _iter_any,
    "readline": _readline,
    "text": _text,
}


async def call(
    url: str,
    middlewares: tuple[Any, ...],
    body: Any = BODY,
    headers: dict[str, str] | None = None,
    reader: Reader = _read,
    **session_kw: Any,
) -> tuple[int, dict[str, str], bytes]:
    """One POST: what the caller sees (status, headers without the per-response ones, body)."""
    async with aiohttp.ClientSession(middlewares=middlewares, **session_kw) as session:
        async with session.post(url, json=body, headers=headers or {}) as resp:
            data = await reader(resp)
            seen = {k: v for k, v in resp.headers.items() if k.lower() not in ("date", "x-request-id")}
            return resp.status, seen, data


def strip_ids(data: bytes) -> bytes:
    """Response bodies carry fresh ids and timestamps: blank them so two runs compare byte for byte otherwise."""
    return _IDS.sub(rb'"\1":_', data)


def test_chat_recorded_and_bytes_unchanged(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = fake_llm.base_url + CHAT
    plain = asyncio.run(call(url, ()))
    got = asyncio.run(call(url, (monitor.aiohttp_middleware(),)))
    assert got[0] == plain[0] == 200
    assert got[1] == plain[1]
    assert strip_ids(got[2]) == strip_ids(plain[2])
    assert json.loads(got[2])["choices"][0]["message"]["content"] == "Hello from the fake LLM."
    row = only_record(monitor)
    assert (row["operation"], row["endpoint"], row["method"], row["status_code"]) == ("chat", CHAT, "POST", 200)
    assert (row["model"], row["input_tokens"], row["output_tokens"], row["total_tokens"]) == ("gpt-4o-mini", 11, 5, 16)
    assert row["provider"] == f"127.0.0.1:{fake_llm.port}"
    assert row["streamed"] is False and row["ok"] is True and row["error"] is None
    assert row["response_bytes"] == len(got[2])
    assert row["duration_ms"] > 0
    assert not _taps


@pytest.mark.parametrize("how", list(READERS))
def test_stream_every_read_method(how: str, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = fake_llm.base_url + CHAT
    headers = {"x-fake-chunk-delay": "0.002", "x-fake-chunks": "8"}  # arrives in several TCP reads
    plain = asyncio.run(call(url, (), STREAM_BODY, headers, READERS[how]))
    got = asyncio.run(call(url, (monitor.aiohttp_middleware(),), STREAM_BODY, headers, READERS[how]))
    assert got[1] == plain[1] and got[1]["Content-Type"].startswith("text/event-stream")
    assert strip_ids(got[2]) == strip_ids(plain[2])
    assert got[2].rstrip().endswith(b"data: [DONE]")
    row = only_record(monitor)
    assert row["streamed"] is True and row["ok"] is True and row["error"] is None
    assert (row["input_tokens"], row["output_tokens"]) == (11, 8)
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["ttlt_ms"] <= row["duration_ms"]
    assert row["response_bytes"] == len(got[2])


@pytest.mark.parametrize("auto_decompress", [True, False], ids=["inflated-by-aiohttp", "raw-gzip"])
def test_gzip_bodies(auto_decompress: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = fake_llm.base_url + CHAT
    headers = {"x-fake-gzip": "1"}
    mw = (monitor.aiohttp_middleware(),)
    plain = asyncio.run(call(url, (), STREAM_BODY, headers, auto_decompress=auto_decompress))
    got = asyncio.run(call(url, mw, STREAM_BODY, headers, auto_decompress=auto_decompress))
    assert got[1]["Content-Encoding"] == "gzip"
    if auto_decompress:
        assert strip_ids(got[2]) == strip_ids(plain[2])
    else:
        assert strip_ids(zlib.decompress(got[2], 31)) == strip_ids(zlib.decompress(plain[2], 31))
    asyncio.run(call(url, mw, BODY, headers, auto_decompress=auto_decompress))
    stream, body = records(monitor)
    for row in (stream, body):
        assert row["ok"] is True and row["error"] is None, row["error"]
        assert row["input_tokens"] == 11 and row["output_tokens"] == 5
    assert stream["streamed"] is True and stream["ttft_ms"] is not None


def test_stream_closed_early_recorded_once(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> bytes:
        async with aiohttp.ClientSession(middlewares=(monitor.aiohttp_middleware(),)) as session:
            headers = {"x-fake-chunk-delay": "0.05", "x-fake-chunks": "20"}
            async with session.post(fake_llm.base_url + CHAT, json=STREAM_BODY, headers=headers) as resp:
                first = await resp.content.readline()
            # leaving the block released the response mid-body
            await asyncio.sleep(0.1)  # let the connection's close reach the reader: still one record
            return first

    assert asyncio.run(main()).startswith(b"data: ")
    row = only_record(monitor)
    assert row["status_code"] == 200 and row["streamed"] is True
    assert "closed by the caller before the end" in row["error"]
    assert row["output_tokens"] is None  # usage comes at the end, never received
    assert not _taps


def test_stream_closed_after_whole_body_arrived_is_complete(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession(middlewares=(monitor.aiohttp_middleware(),)) as session:
            resp = await session.post(fake_llm.base_url + CHAT, json=STREAM_BODY)
            await resp.content.readline()
            await asyncio.sleep(0.2)  # the rest arrives into the buffer, unread
            resp.close()

    asyncio.run(main())
    row = only_record(monitor)
    assert row["ok"] is True and row["error"] is None and row["output_tokens"] == 5


def test_unclosed_response_ends_with_its_body(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # aiohttp keeps an unclosed response alive (its reader's end-of-body callback) while the body arrives.
    async def main() -> None:
        async with aiohttp.ClientSession(middlewares=(monitor.aiohttp_middleware(),)) as session:
            headers = {"x-fake-chunk-delay": "0.01", "x-fake-chunks": "10"}
            resp = await session.post(fake_llm.base_url + CHAT, json=STREAM_BODY, headers=headers)
            await resp.content.readline()
            del resp  # never closed, never read again
            gc.collect()
            await asyncio.sleep(0.3)

    asyncio.run(main())
    row = only_record(monitor)
    assert row["ok"] is True and row["error"] is None and row["output_tokens"] == 10
    assert not _taps


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # aiohttp's own, loop closed
def test_response_left_open_when_the_loop_ends_recorded_once(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> None:
        session = aiohttp.ClientSession(middlewares=(monitor.aiohttp_middleware(),))
        headers = {"x-fake-chunk-delay": "0.2", "x-fake-chunks": "50"}
        resp = await session.post(fake_llm.base_url + CHAT, json=STREAM_BODY, headers=headers)
        await resp.content.readline()  # then the loop ends with session, connection and response open

    asyncio.run(main())
    gc.collect()
    row = only_record(monitor)
    assert row["status_code"] == 200 and row["output_tokens"] is None
    assert row["error"].startswith("response dropped by the caller without closing it")
    assert not _taps


def test_broken_stream(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def run(middlewares: tuple[Any, ...]) -> BaseException:
        async with aiohttp.ClientSession(middlewares=middlewares) as session:
            headers = {"x-fake-behavior": "disconnect", "x-fake-chunk-delay": "0.01"}
            async with session.post(fake_llm.base_url + CHAT, json=STREAM_BODY, headers=headers) as resp:
                with pytest.raises(aiohttp.ClientError) as caught:
                    async for _line in resp.content:
                        pass
                return caught.value

    plain = asyncio.run(run(()))
    got = asyncio.run(run((monitor.aiohttp_middleware(),)))
    assert type(got) is type(plain) and str(got) == str(plain)
    row = only_record(monitor)
    assert row["status_code"] == 200 and row["ok"] is False
    assert row["error"].startswith("response stream broke: ")
    assert type(got).__name__ in row["error"]


def test_error_status_recorded_with_provider_message(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = fake_llm.base_url + CHAT
    headers = {"x-fake-status": "429"}
    plain = asyncio.run(call(url, (), BODY, headers))
    got = asyncio.run(call(url, (monitor.aiohttp_middleware(),), BODY, headers))
    assert got[0] == plain[0] == 429 and got[2] == plain[2]
    row = only_record(monitor)
    assert row["status_code"] == 429 and row["ok"] is False
    assert row["error_type"] and row["error"] and "rate limit" in row["error"].lower()
    assert row["retry_after_s"] == pytest.approx(0.001)


def free_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_reaches_caller_unchanged(monitor: Monitor) -> None:
    url = f"http://127.0.0.1:{free_port()}{CHAT}"

    async def run(middlewares: tuple[Any, ...]) -> BaseException:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await call(url, middlewares)
        return caught.value

    plain = asyncio.run(run(()))
    got = asyncio.run(run((monitor.aiohttp_middleware(),)))
    assert type(got) is type(plain) and str(got) == str(plain)
    assert got.__cause__ is not None or got.__context__ is None or type(got.__context__) is type(plain.__context__)
    row = only_record(monitor)
    assert row["status_code"] is None and row["ok"] is False
    assert row["error_type"] == "ClientConnectorError"


def test_timeout_before_headers_recorded_as_failed(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=0.1)
        async with aiohttp.ClientSession(middlewares=(monitor.aiohttp_middleware(),), timeout=timeout) as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.post(fake_llm.base_url + CHAT, json=BODY, headers={"x-fake-chunk-delay": "1"})

    asyncio.run(main())
    row = only_record(monitor)
    assert row["status_code"] is None and row["ok"] is False and row["error_type"]


def test_gate_refuses_before_sending(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    def refuse(pending: Any) -> None:
        raise CallRefused("over budget")

    monitor.hooks.add_gate(refuse)
    seen = len(fake_llm.requests_seen)
    with pytest.raises(CallRefused, match="over budget"):
        asyncio.run(call(fake_llm.base_url + CHAT, (monitor.aiohttp_middleware(),)))
    assert len(fake_llm.requests_seen) == seen  # nothing left the process
    row = only_record(monitor)
    assert row["ok"] is False and row["error_type"] == "CallRefused"


def test_broken_gate_never_blocks_the_call(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    def broken(pending: Any) -> None:
        raise ValueError("bug in a gate")

    monitor.hooks.add_gate(broken)
    status, _, _ = asyncio.run(call(fake_llm.base_url + CHAT, (monitor.aiohttp_middleware(),)))
    assert status == 200
    assert only_record(monitor)["ok"] is True
    assert monitor.internal_errors == 1


def test_non_llm_url_untouched(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def get(middlewares: tuple[Any, ...]) -> tuple[int, bytes]:
        async with aiohttp.ClientSession(middlewares=middlewares) as session:
            async with session.get(fake_llm.base_url + "/not/an/llm/route?x=1") as resp:
                return resp.status, await resp.read()

    assert asyncio.run(get((monitor.aiohttp_middleware(),))) == asyncio.run(get(()))
    assert records(monitor) == []
    assert monitor.internal_errors == 0


def test_instrument_aiohttp_new_sessions_only(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = fake_llm.base_url + CHAT
    original_init = aiohttp.ClientSession.__init__

    async def main() -> None:
        before = aiohttp.ClientSession()
        monitor.instrument_aiohttp()
        try:
            after = aiohttp.ClientSession(middlewares=())
            assert any(isinstance(m, CaptureMiddleware) for m in after._middlewares)
            for session in (before, after):
                async with session.post(url, json=BODY) as resp:
                    await resp.read()
        finally:
            monitor.uninstrument_aiohttp()
        assert aiohttp.ClientSession.__init__ is original_init
        later = aiohttp.ClientSession()
        async with later.post(url, json=BODY) as resp:  # made after uninstrument: not captured
            await resp.read()
        async with after.post(url, json=BODY) as resp:  # made while instrumented: still captured
            await resp.read()
        for session in (before, after, later):
            await session.close()

    asyncio.run(main())
    assert len(records(monitor)) == 2


def test_instrument_keeps_session_middlewares_and_adds_ours_last(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    order: list[str] = []

    async def outer(request: Any, handler: Any) -> Any:
        order.append("outer")
        request.headers["x-fake-prompt-tokens"] = "42"  # ours, innermost, records what is really sent
        return await handler(request)

    async def main() -> None:
        monitor.instrument_aiohttp()
        try:
            session = aiohttp.ClientSession(middlewares=(outer,))
        finally:
            monitor.uninstrument_aiohttp()
        assert session._middlewares[0] is outer and isinstance(session._middlewares[-1], CaptureMiddleware)
        async with session, session.post(fake_llm.base_url + CHAT, json=BODY) as resp:
            await resp.read()

    asyncio.run(main())
    assert order == ["outer"]
    assert only_record(monitor)["input_tokens"] == 42


def test_double_instrument_refused(monitor: Monitor, tmp_path: Any) -> None:
    other = Monitor(tmp_path / "other.db")
    monitor.instrument_aiohttp()
    try:
        with pytest.raises(RuntimeError, match="already instrumented"):
            other.instrument_aiohttp()
        other.uninstrument_aiohttp()  # not the owner: leaves ours in place
        from llm_monitor_mw import instrument_aiohttp

        assert instrument_aiohttp.installed_middleware() is not None
    finally:
        monitor.uninstrument_aiohttp()
        other.close()


def test_instrument_both_and_uninstrument(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    import httpx

    from llm_monitor_mw.capture.transport import AsyncMonitorTransport

    async def main() -> None:
        monitor.instrument()
        try:
            session = aiohttp.ClientSession()
            client = httpx.AsyncClient()
        finally:
            monitor.uninstrument()
        assert isinstance(client._transport, AsyncMonitorTransport)
        async with session, session.post(fake_llm.base_url + CHAT, json=BODY) as resp:
            await resp.read()
        async with client:
            await client.post(fake_llm.base_url + CHAT, json=BODY)
        async with aiohttp.ClientSession() as plain, plain.post(fake_llm.base_url + CHAT, json=BODY) as resp:
            await resp.read()
        async with httpx.AsyncClient() as plain_client:
            assert not isinstance(plain_client._transport, AsyncMonitorTransport)

    asyncio.run(main())
    assert len(records(monitor)) == 2


class _OwnReader(StreamReader):
    __slots__ = ()


class _OwnReaderResponse(aiohttp.ClientResponse):
    """A session's own response class with a reader of its own: not something the tap knows how to swap."""

    async def start(self, connection: Any) -> Any:
        await super().start(connection)
        self.content.__class__ = _OwnReader
        return self


def test_internal_failure_passes_the_response_through(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    url = fake_llm.base_url + CHAT
    plain = asyncio.run(call(url, (), STREAM_BODY, reader=_readline, response_class=_OwnReaderResponse))
    mw = (monitor.aiohttp_middleware(),)
    got = asyncio.run(call(url, mw, STREAM_BODY, reader=_readline, response_class=_OwnReaderResponse))
    assert got[:2] == plain[:2] and strip_ids(got[2]) == strip_ids(plain[2])
    assert monitor.internal_errors == 1  # counted (and logged); the call went through unrecorded
    assert records(monitor) == []
    assert not _taps


def test_read_timeout_mid_body_recorded_as_broken(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def run(middlewares: tuple[Any, ...]) -> BaseException:
        timeout = aiohttp.ClientTimeout(sock_read=0.1)
        async with aiohttp.ClientSession(middlewares=middlewares, timeout=timeout) as session:
            headers = {"x-fake-chunk-delay": "0.5", "x-fake-chunks": "3"}
            async with session.post(fake_llm.base_url + CHAT, json=STREAM_BODY, headers=headers) as resp:
                with pytest.raises(asyncio.TimeoutError) as caught:
                    async for _line in resp.content:
                        pass
                return caught.value

    plain = asyncio.run(run(()))
    got = asyncio.run(run((monitor.aiohttp_middleware(),)))
    assert type(got) is type(plain) and str(got) == str(plain)
    row = only_record(monitor)
    assert row["status_code"] == 200 and row["ok"] is False
    assert row["error"].startswith(f"response stream broke: {type(got).__name__}")
