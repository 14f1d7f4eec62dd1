"""google-genai's async client sends through aiohttp when aiohttp is installed: captured by ``instrument_aiohttp()``.

The real SDK against the bundled fake Gemini API. ``HttpRetryOptions(attempts=1)`` keeps the SDK from retrying
(and from its implicit 1-10 s sleep after a connection error) so each test sees one attempt.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors
from google.genai import types as genai_types

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.aiohttp import _taps
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records

pytestmark = pytest.mark.sdk

MODEL = "gemini-2.0-flash"
FIELDS = ("operation", "endpoint", "model", "status_code", "input_tokens", "output_tokens", "total_tokens",
          "cached_tokens", "reasoning_tokens", "finish_reason", "streamed", "ok", "error", "error_type")  # fmt: skip


def options(base_url: str, headers: dict[str, str] | None = None, **kw: Any) -> genai_types.HttpOptions:
    return genai_types.HttpOptions(
        base_url=base_url,
        api_version="v1beta",
        headers=headers or {},
        retry_options=genai_types.HttpRetryOptions(attempts=1),
        **kw,
    )


def client(base_url: str, headers: dict[str, str] | None = None, **kw: Any) -> genai.Client:
    return genai.Client(api_key="AIza-test-key-wxyz", http_options=options(base_url, headers, **kw))


@pytest.fixture
def instrumented(monitor: Monitor) -> Iterator[Monitor]:
    monitor.instrument_aiohttp()
    try:
        yield monitor
    finally:
        monitor.uninstrument_aiohttp()


async def generate(c: genai.Client) -> genai_types.GenerateContentResponse:
    return await c.aio.models.generate_content(model=MODEL, contents="Say hello")


async def stream(c: genai.Client) -> list[genai_types.GenerateContentResponse]:
    return [chunk async for chunk in await c.aio.models.generate_content_stream(model=MODEL, contents="Say hello")]


def test_async_client_uses_aiohttp_session(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    c = client(fake_llm.base_url)
    assert c._api_client._use_aiohttp()  # the premise: without our middleware these calls would be missed


def test_generate_and_stream_recorded(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    c = client(fake_llm.base_url)

    async def main() -> tuple[Any, list[Any]]:
        return await generate(c), await stream(c)

    reply, chunks = asyncio.run(main())
    assert reply.text == "Hello from the fake LLM."
    assert "".join(ch.text or "" for ch in chunks) == "Hello from the fake LLM."
    body, streamed = records(instrumented)
    for row in (body, streamed):
        assert row["model"] == MODEL and row["status_code"] == 200 and row["ok"] is True and row["error"] is None
        assert row["input_tokens"] == reply.usage_metadata.prompt_token_count == 11
        assert row["total_tokens"] == reply.usage_metadata.total_token_count
        assert row["provider"] == f"127.0.0.1:{fake_llm.port}"
    assert body["streamed"] is False and body["endpoint"].endswith(":generateContent")
    assert streamed["streamed"] is True and streamed["endpoint"].endswith(":streamGenerateContent")
    assert streamed["ttft_ms"] is not None and 0 < streamed["ttft_ms"] <= streamed["ttlt_ms"]
    assert not _taps


def test_records_match_the_httpx_path(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    """The same calls through google-genai's httpx path (our transport) give the same records."""
    headers = {"x-fake-chunk-delay": "0.002"}

    async def main() -> None:
        await generate(client(fake_llm.base_url, headers))
        await stream(client(fake_llm.base_url, headers))
        http = httpx.AsyncClient(transport=instrumented.async_transport())
        over_httpx = client(fake_llm.base_url, headers, httpx_async_client=http)
        assert not over_httpx._api_client._use_aiohttp()
        await generate(over_httpx)
        await stream(over_httpx)
        await http.aclose()

    asyncio.run(main())
    rows = [{k: r[k] for k in FIELDS} for r in records(instrumented)]
    assert len(rows) == 4
    assert rows[:2] == rows[2:]


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("streamed", [False, True], ids=["generate", "stream"])
def test_error_statuses_recorded(status: int, streamed: bool, instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    c = client(fake_llm.base_url, {"x-fake-status": str(status)})
    with pytest.raises(errors.APIError) as caught:
        asyncio.run(stream(c) if streamed else generate(c))
    assert caught.value.code == status
    row = only_record(instrumented)
    assert row["status_code"] == status and row["ok"] is False and row["error_type"]
    assert row["model"] == MODEL and row["error"]
    assert caught.value.message and caught.value.message in row["error"]


def test_stream_closed_early_recorded_once(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    headers = {"x-fake-chunk-delay": "0.05", "x-fake-chunks": "30"}

    async def first_then_close(c: genai.Client) -> str | None:
        it = await c.aio.models.generate_content_stream(model=MODEL, contents="Say hello")
        first = await it.__anext__()
        await it.aclose()
        await asyncio.sleep(0.1)
        return first.text

    async def main() -> None:
        assert await first_then_close(client(fake_llm.base_url, headers)) == "Hello"
        http = httpx.AsyncClient(transport=instrumented.async_transport())
        assert await first_then_close(client(fake_llm.base_url, headers, httpx_async_client=http)) == "Hello"
        await http.aclose()

    asyncio.run(main())
    over_aiohttp, over_httpx = records(instrumented)
    assert over_aiohttp["streamed"] is True and over_aiohttp["status_code"] == 200
    assert over_aiohttp["output_tokens"] is None
    # google-genai closes only its outer generator; asyncio finalises the inner one, which closes the response: both
    # paths call that a drop (not the caller's own close), and record it once.
    assert over_aiohttp["error"] == over_httpx["error"]
    assert over_aiohttp["error"].startswith("response dropped by the caller")
    assert not _taps


def test_connection_refused_reaches_caller_unchanged(monitor: Monitor) -> None:
    with socket.socket() as sock:  # bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def attempt() -> BaseException:
        with pytest.raises(Exception) as caught:
            asyncio.run(generate(client(url)))
        return caught.value

    plain = attempt()
    monitor.instrument_aiohttp()
    try:
        got = attempt()
    finally:
        monitor.uninstrument_aiohttp()
    assert type(got) is type(plain)
    assert str(getattr(got, "os_error", got)) == str(getattr(plain, "os_error", plain))
    row = only_record(monitor)
    assert row["status_code"] is None and row["ok"] is False
    assert row["error_type"] == type(got).__name__


def test_session_made_before_instrument_is_not_captured(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    """google-genai makes its aiohttp session at its first call in an event loop: one made before is not captured."""
    early = client(fake_llm.base_url)
    late = client(fake_llm.base_url)

    async def main() -> None:
        await generate(early)  # its session is made now, before instrument_aiohttp()
        monitor.instrument_aiohttp()
        try:
            await generate(early)  # same session: not captured
            await generate(late)  # session made now: captured
        finally:
            monitor.uninstrument_aiohttp()
        await generate(client(fake_llm.base_url))  # made after uninstrument: not captured

    asyncio.run(main())
    assert len(records(monitor)) == 1


def test_retry_options_attempts_grouped(instrumented: Monitor, fake_llm: FakeLLMServer) -> None:
    """HttpRetryOptions over aiohttp: one record per attempt, grouped as one call (the request view carries the
    method, URL and body the retry grouping compares)."""
    failing = {"x-fake-status": "503", "x-fake-fail-times": "2", "x-fake-key": uuid.uuid4().hex}
    retry = genai_types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.05, http_status_codes=[503])
    http_options = genai_types.HttpOptions(
        base_url=fake_llm.base_url, api_version="v1beta", headers=failing, retry_options=retry
    )
    c = genai.Client(api_key="AIza-test-key-wxyz", http_options=http_options)
    assert asyncio.run(generate(c)).text
    rows = records(instrumented)
    assert [(r["attempt"], r["status_code"]) for r in rows] == [(1, 503), (2, 503), (3, 200)]
    assert len({r["call_id"] for r in rows}) == 1
