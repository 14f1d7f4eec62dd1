"""Never break the host: the caller gets exactly the inner transport's bytes, headers, timing and exceptions."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture import pending as pending_module
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.capture.recording import AsyncRecordingTransport, RecordingTransport
from tests.conftest import only_record, records

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

CASES = [
    pytest.param(CHAT, {}, id="json"),
    pytest.param(CHAT, {"x-fake-gzip": "1"}, id="json-gzip"),
    pytest.param(STREAM, {}, id="sse"),
    pytest.param(STREAM, {"x-fake-gzip": "1"}, id="sse-gzip"),
    pytest.param(CHAT, {"x-fake-status": "429"}, id="429"),
    pytest.param(CHAT, {"x-fake-status": "500"}, id="500"),
    pytest.param(CHAT, {"x-fake-behavior": "malformed-json"}, id="malformed-json"),
    pytest.param(CHAT, {"x-fake-behavior": "non-json"}, id="non-json"),
    pytest.param(STREAM, {"x-fake-behavior": "truncate"}, id="truncated-sse"),
    pytest.param(STREAM, {"x-fake-behavior": "malformed-sse"}, id="malformed-sse"),
]


def sync_roundtrip(monitor: Monitor, url: str, body: Any, headers: dict[str, str]) -> tuple[Any, ...]:
    inner = RecordingTransport()
    with httpx.Client(transport=monitor.transport(inner=inner)) as client:
        with client.stream("POST", url, json=body, headers=headers) as response:
            got = list(response.iter_raw())
    assert inner.response is not None
    return response, inner, got


@pytest.mark.parametrize(("body", "headers"), CASES)
def test_sync_bytes_headers_status_identical(
    body: Any, headers: dict[str, str], monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    response, inner, got = sync_roundtrip(monitor, fake_llm.base_url + "/v1/chat/completions", body, headers)
    assert got == [chunk for _, chunk in inner.chunks]  # same chunks, same boundaries, still content-encoded
    assert response.status_code == inner.response.status_code
    assert response.headers.raw == inner.response.headers.raw
    assert response.extensions == inner.response.extensions
    only_record(monitor)


@pytest.mark.parametrize(("body", "headers"), CASES)
def test_async_bytes_headers_status_identical(
    body: Any, headers: dict[str, str], monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    async def main() -> tuple[Any, ...]:
        inner = AsyncRecordingTransport()
        async with (
            httpx.AsyncClient(transport=monitor.async_transport(inner=inner)) as client,
            client.stream("POST", fake_llm.base_url + "/v1/chat/completions", json=body, headers=headers) as response,
        ):
            got = [chunk async for chunk in response.aiter_raw()]
        return response, inner, got

    response, inner, got = asyncio.run(main())
    assert got == [chunk for _, chunk in inner.chunks]
    assert response.headers.raw == inner.response.headers.raw
    only_record(monitor)


def test_chunks_reach_the_caller_as_they_arrive(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    """Unbuffered: each chunk is handed up the moment the inner stream yields it, not at the end."""
    inner = RecordingTransport()
    arrivals: list[float] = []
    headers = {"x-fake-chunk-delay": "0.1"}
    with httpx.Client(transport=monitor.transport(inner=inner)) as client:
        with client.stream("POST", fake_llm.base_url + "/v1/chat/completions", json=STREAM, headers=headers) as r:
            for _ in r.iter_raw():
                arrivals.append(time.perf_counter())
    assert len(arrivals) == len(inner.chunks) >= 5
    lags = [arrived - produced for arrived, (produced, _) in zip(arrivals, inner.chunks, strict=True)]
    assert max(lags) < 0.05  # with 0.1 s between chunks, any buffering would show as >= 0.1 s
    row = only_record(monitor)
    assert row["ttft_ms"] >= 100  # the first content chunk came after one delay


def test_gzip_stream_is_parsed_from_a_decoded_copy(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    response, _inner, _got = sync_roundtrip(
        monitor, fake_llm.base_url + "/v1/chat/completions", STREAM, {"x-fake-gzip": "1"}
    )
    assert response.headers["content-encoding"] == "gzip"
    row = only_record(monitor)
    assert row["ok"] and row["error"] is None and row["total_tokens"] == 16 and row["ttft_ms"] is not None


def test_connection_error_is_reraised_unchanged(monitor: Monitor) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inner = RecordingTransport()
    with httpx.Client(transport=monitor.transport(inner=inner)) as client, pytest.raises(httpx.ConnectError) as info:
        client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT)
    assert info.value is inner.exception  # the very same exception object
    row = only_record(monitor)
    assert row["status_code"] is None and row["error_type"] == "ConnectError" and row["duration_ms"] >= 0


def test_mid_stream_disconnect_reraises_and_records(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    inner = RecordingTransport()
    with httpx.Client(transport=monitor.transport(inner=inner)) as client, pytest.raises(httpx.RemoteProtocolError):
        with client.stream(
            "POST", fake_llm.base_url + "/v1/chat/completions", json=STREAM, headers={"x-fake-behavior": "disconnect"}
        ) as response:
            for _ in response.iter_raw():
                pass
    row = only_record(monitor)
    assert row["ok"] is False and row["error_type"] == "RemoteProtocolError"
    assert "response stream broke" in row["error"]


def test_abandoned_stream_is_recorded_once(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with (
        httpx.Client(transport=monitor.transport()) as client,
        client.stream(
            "POST", fake_llm.base_url + "/v1/chat/completions", json=STREAM, headers={"x-fake-chunk-delay": "0.05"}
        ) as response,
    ):
        next(response.iter_raw())
    row = only_record(monitor)
    assert "closed by the caller" in row["error"]
    assert row["error_type"] is None and row["ok"] is True  # the caller's choice, not a provider failure


@pytest.mark.parametrize(
    ("body", "behavior", "error_type", "phrase"),
    [
        (CHAT, "malformed-json", "invalid_response", "not valid JSON"),
        (CHAT, "non-json", "invalid_response", "text/html"),
        (STREAM, "truncate", "incomplete_stream", "truncated"),
        (STREAM, "malformed-sse", "malformed_stream", "malformed stream event"),
    ],
)
def test_bad_bodies_become_error_notes(
    body: Any, behavior: str, error_type: str, phrase: str, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    sync_roundtrip(monitor, fake_llm.base_url + "/v1/chat/completions", body, {"x-fake-behavior": behavior})
    row = only_record(monitor)
    assert row["error_type"] == error_type and phrase in row["error"] and row["ok"] is False


def test_truncated_stream_keeps_what_was_seen(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    sync_roundtrip(
        monitor,
        fake_llm.base_url + "/v1/messages",
        {"model": "claude-haiku-4-5", "stream": True, "max_tokens": 10, "messages": []},
        {"x-fake-behavior": "truncate"},
    )
    row = only_record(monitor)
    assert row["error_type"] == "incomplete_stream"
    assert row["input_tokens"] is not None  # message_start arrived before the cut
    assert row["model"] == "claude-haiku-4-5"


def test_five_megabyte_body(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    _response, _inner, got = sync_roundtrip(
        monitor, fake_llm.base_url + "/v1/chat/completions", CHAT, {"x-fake-behavior": "big-body"}
    )
    assert len(b"".join(got)) > 5 * 1024 * 1024
    row = only_record(monitor)
    assert row["ok"] and row["output_tokens"] > 1_000_000 // 4


def test_body_over_the_parse_limit_is_noted_not_parsed(tmp_path: Any, fake_llm: FakeLLMServer) -> None:
    with Monitor(tmp_path / "m.db", max_body_bytes=1024 * 1024) as monitor:
        _response, inner, got = sync_roundtrip(
            monitor, fake_llm.base_url + "/v1/chat/completions", CHAT, {"x-fake-behavior": "big-body"}
        )
        assert b"".join(got) == b"".join(c for _, c in inner.chunks)
        row = only_record(monitor)
        assert "max_body_bytes" in row["error"] and row["output_tokens"] is None and row["ok"]


def test_capture_bugs_never_reach_the_caller(
    monitor: Monitor, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in capture")

    monkeypatch.setattr(pending_module.PendingCall, "attach", boom)
    response, inner, got = sync_roundtrip(monitor, fake_llm.base_url + "/v1/chat/completions", STREAM, {})
    assert got == [c for _, c in inner.chunks]
    assert monitor.stats()["internal_errors"] == 1

    monkeypatch.undo()
    monkeypatch.setattr(pending_module.PendingCall, "to_record", boom)  # fails on the writer thread
    response, inner, got = sync_roundtrip(monitor, fake_llm.base_url + "/v1/chat/completions", CHAT, {})
    assert response.status_code == 200 and got
    monitor.flush(5)
    assert monitor.stats()["failed"] == 1


def test_feed_errors_become_notes(monitor: Monitor, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pending_module, "CONTENT_MARK", None)  # .search on None raises inside feed()
    _response, inner, got = sync_roundtrip(monitor, fake_llm.base_url + "/v1/chat/completions", STREAM, {})
    assert got == [c for _, c in inner.chunks]
    assert "capture error" in records(monitor)[0]["error"]


def test_timeouts_are_recorded_and_reraised(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    inner = RecordingTransport()
    with httpx.Client(transport=monitor.transport(inner=inner), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout) as info:
            client.post(fake_llm.base_url + "/v1/chat/completions", json=CHAT, headers={"x-fake-chunk-delay": "1"})
    assert info.value is inner.exception
    row = only_record(monitor)
    assert row["error_type"] == "ReadTimeout" and row["status_code"] is None and row["duration_ms"] >= 200
