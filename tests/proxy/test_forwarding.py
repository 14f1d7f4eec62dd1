"""Plain HTTP through the proxy to a deterministic upstream: bytes, headers, streaming both ways, failures."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.transport import CallRefused
from tests.proxy.running import config, proxy, recorded
from tests.proxy.upstream import CHAT, ERROR, FRAMES, HOP_BY_HOP, Upstream

CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture
def proxy_url(monitor: Monitor, upstream_url: str, upstream: Upstream) -> Iterator[str]:
    with proxy(monitor, config(upstream_url, timeout=5)) as url:
        yield url


def raw_exchange(
    base: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (lower-cased names, in order) and the raw, still-encoded body bytes."""
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", base + path, content=body, headers=headers) as response:
            raw = b"".join(response.iter_raw())
            items = [(k.decode().lower(), v.decode()) for k, v in response.headers.raw]
            return response.status_code, items, raw


def end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.encode() not in HOP_BY_HOP]


@pytest.mark.parametrize(
    ("body", "extra"),
    [(CHAT_BODY, {}), (STREAM_BODY, {}), (CHAT_BODY, {"x-test-gzip": "1"}), (STREAM_BODY, {"x-test-gzip": "1"})],
    ids=["json", "stream", "json-gzip", "stream-gzip"],
)
def test_bodies_and_headers_equal_direct(
    proxy_url: str, upstream_url: str, upstream: Upstream, monitor: Monitor, body: bytes, extra: dict[str, str]
) -> None:
    headers = {**JSON_HEADERS, "accept-encoding": "gzip", "authorization": "Bearer sk-test-1234", **extra}
    direct = raw_exchange(upstream_url, "/v1/chat/completions", body, headers)
    proxied = raw_exchange(proxy_url, "/v1/chat/completions", body, headers)
    assert proxied[0] == direct[0] == 200
    assert proxied[2] == direct[2]  # byte for byte, still gzip-encoded when the upstream encoded it
    expected = CHAT if body == CHAT_BODY else b"".join(FRAMES)
    assert (gzip.decompress(proxied[2]) if extra else proxied[2]) == expected
    if extra:
        assert ("content-encoding", "gzip") in proxied[1]
    assert end_to_end(proxied[1]) == end_to_end(direct[1])
    assert [k for k, _ in direct[1] if k in ("connection", "x-hop", "keep-alive")]  # the upstream did send them
    assert not {k for k, _ in proxied[1]} & {"x-hop", "keep-alive"}
    assert ("connection", "x-hop") not in proxied[1]
    # what the upstream received: the same request, minus Host (rewritten) and hop-by-hop headers
    sent_direct, sent_proxied = upstream.seen
    assert sent_proxied["body"] == sent_direct["body"] == body.decode()
    assert dict(sent_proxied["headers"])["host"] == upstream_url.removeprefix("http://")

    def forwarded(seen: dict[str, Any]) -> list[list[str]]:
        return [h for h in seen["headers"] if h[0] not in ("host", "connection")]

    assert forwarded(sent_proxied) == forwarded(sent_direct)
    row = recorded(monitor)[0]
    assert (row["status_code"], row["model"], row["ok"]) == (200, "gpt-4o-mini", True)
    if body == CHAT_BODY:
        assert (row["input_tokens"], row["output_tokens"], row["streamed"]) == (7, 3, False)
    else:
        assert (row["input_tokens"], row["output_tokens"], row["streamed"]) == (7, 4, True)
    assert row["tags"]["client"] == "127.0.0.1"


def test_method_path_query_and_hop_by_hop_request_headers(proxy_url: str, upstream: Upstream) -> None:
    path = "/echo/a%20b/%2Fx;p=1?q=%E2%9C%93&q=2&empty="
    body = b"\x00\x01binary\xff"
    headers = [
        ("Connection", "x-private, keep-alive"),
        ("X-Private", "secret"),
        ("Keep-Alive", "timeout=1"),
        ("TE", "trailers"),
        ("Trailer", "x-t"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Repeated", "1"),
        ("X-Repeated", "2"),
        ("X-Odd-Value", "a\tb  c"),
    ]
    with httpx.Client() as client:
        response = client.request("PATCH", proxy_url + path, content=body, headers=headers)
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "PATCH"
    assert seen["raw_path"] == "/echo/a%20b/%2Fx;p=1"
    assert seen["query"] == "q=%E2%9C%93&q=2&empty="
    assert seen["body"].encode("latin-1") == body
    names = [name for name, _ in seen["headers"]]
    for hop in ("connection", "x-private", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"):
        assert hop not in names
    assert [v for k, v in seen["headers"] if k == "x-repeated"] == ["1", "2"]
    assert dict(seen["headers"])["x-odd-value"] == "a\tb  c"
    assert dict(seen["headers"])["content-length"] == str(len(body))


def test_get_and_head_without_a_body(proxy_url: str, upstream: Upstream) -> None:
    with httpx.Client() as client:
        got = client.get(proxy_url + "/echo?x=1")
        head = client.head(proxy_url + "/v1/chat/completions")
    assert got.json()["method"] == "GET" and got.json()["body"] == ""
    names = [name for name, _ in got.json()["headers"]]
    assert "content-length" not in names and "transfer-encoding" not in names
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(CHAT))


def test_request_body_is_streamed_to_the_upstream(proxy_url: str, upstream: Upstream) -> None:
    # The second chunk is only produced once the upstream has received the first: a proxy that buffered the
    # request body would never forward the first chunk, and the upload would stall.
    def body() -> Iterator[bytes]:
        yield b"first chunk;"
        assert upstream.first_upload_chunk.wait(10), "the upstream did not get the first chunk before the last"
        yield b"second chunk"

    with httpx.Client(timeout=20) as client:
        response = client.post(proxy_url + "/upload", content=body())
    assert response.status_code == 200
    assert b"".join(upstream.upload_chunks) == b"first chunk;second chunk"
    assert len(upstream.upload_chunks) >= 2


def test_response_chunks_arrive_as_the_upstream_sends_them(
    proxy_url: str, upstream: Upstream, monitor: Monitor
) -> None:
    # The upstream holds its last frame until released: the client must see the first frames before that.
    timings: dict[str, float] = {}
    headers = {**JSON_HEADERS, "x-test-hold": "1"}
    start = time.perf_counter()
    with httpx.Client(timeout=20) as client:
        with client.stream("POST", proxy_url + "/v1/chat/completions", content=STREAM_BODY, headers=headers) as r:
            chunks = r.iter_raw()
            first = next(chunks)
            timings["ttft_ms"] = (time.perf_counter() - start) * 1000
            assert first.startswith(b"data: ")
            assert upstream.held.wait(10)
            assert not upstream._release.is_set()  # the first chunk arrived before the upstream sent its last
            upstream.release()
            rest = b"".join(chunks)
    assert first + rest == b"".join(FRAMES)
    row = recorded(monitor)[0]
    assert row["streamed"] and row["ok"] and row["output_tokens"] == 4 and row["ttft_ms"] is not None
    print(f"TTFT through the proxy: {timings['ttft_ms']:.1f} ms")


def test_client_disconnect_mid_stream_is_recorded_once(proxy_url: str, upstream: Upstream, monitor: Monitor) -> None:
    headers = {**JSON_HEADERS, "x-test-hold": "1"}
    with httpx.Client(timeout=20) as client:
        with client.stream("POST", proxy_url + "/v1/chat/completions", content=STREAM_BODY, headers=headers) as r:
            assert next(r.iter_raw()).startswith(b"data: ")
            assert upstream.held.wait(10)
        # leaving the block closes the unfinished response: the connection to the proxy is dropped
    assert upstream.disconnected.wait(10), "the proxy did not close the upstream response"
    upstream.release()
    time.sleep(0.2)  # anything recorded twice would arrive now
    rows = recorded(monitor)
    assert len(rows) == 1, rows
    assert rows[0]["streamed"] is True
    assert "closed by the caller before the end of the body" in rows[0]["error"]


def test_upstream_5xx_passes_through_and_is_recorded(proxy_url: str, upstream_url: str, monitor: Monitor) -> None:
    headers = {**JSON_HEADERS, "x-test-status": "503"}
    direct = raw_exchange(upstream_url, "/v1/chat/completions", CHAT_BODY, headers)
    proxied = raw_exchange(proxy_url, "/v1/chat/completions", CHAT_BODY, headers)
    assert proxied[0] == direct[0] == 503
    assert proxied[2] == direct[2] == ERROR
    assert end_to_end(proxied[1]) == end_to_end(direct[1])
    row = recorded(monitor)[0]
    assert (row["status_code"], row["ok"], row["error_type"]) == (503, False, "server_error")
    assert "overloaded" in row["error"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_upstream_down_is_a_502_with_json_and_recorded(monitor: Monitor) -> None:
    with proxy(monitor, config(f"http://127.0.0.1:{closed_port()}")) as url:
        response = httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers=JSON_HEADERS)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable" and "ConnectError" in error["message"]
    row = recorded(monitor)[0]
    assert row["status_code"] is None and row["ok"] is False and row["error_type"] == "ConnectError"
    assert row["endpoint"] == "/v1/chat/completions"


def test_upstream_timeout_is_a_504(monitor: Monitor, fake_llm: Any) -> None:
    headers = {**JSON_HEADERS, "x-fake-chunk-delay": "3"}
    with proxy(monitor, config(fake_llm.base_url, timeout=0.3)) as url:
        response = httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers=headers, timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    row = recorded(monitor)[0]
    assert row["ok"] is False and row["error_type"] == "ReadTimeout"


def test_no_route_is_a_404(monitor: Monitor, upstream_url: str, upstream: Upstream) -> None:
    with proxy(monitor, config(routes={"/openai": upstream_url})) as url:
        missing = httpx.get(url + "/v1/models")
        routed = httpx.get(url + "/openai/echo")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_route"
    assert routed.status_code == 200 and routed.json()["raw_path"] == "/echo"
    assert len(upstream.seen) == 1


def test_raw_socket_chunked_upload(proxy_url: str, upstream: Upstream) -> None:
    # A curl-style chunked upload with an Expect header, written by hand.
    host = proxy_url.removeprefix("http://")
    request = (
        b"POST /echo HTTP/1.1\r\nHost: " + host.encode() + b"\r\nTransfer-Encoding: chunked\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_lines = [line for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert status_lines[-1].startswith(b"HTTP/1.1 200"), data
    assert json.loads(data.rpartition(b"\r\n\r\n")[2])["body"] == "hello world"
    seen = upstream.seen[-1]
    assert seen["body"] == "hello world"
    names = [name for name, _ in seen["headers"]]
    assert "expect" not in names and names.count("transfer-encoding") == 1  # re-framed by the proxy's client


def test_concurrent_uploads_and_downloads_stay_separate(proxy_url: str, upstream: Upstream) -> None:
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        body = json.dumps({"i": i, "pad": "x" * (i * 1000)}).encode()
        results[i] = httpx.post(proxy_url + f"/echo/{i}", content=body, timeout=20).json()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, seen in results.items():
        assert seen["raw_path"] == f"/echo/{i}" and json.loads(seen["body"])["i"] == i


def test_a_refused_call_is_a_403_and_never_sent(monitor: Monitor, upstream_url: str, upstream: Upstream) -> None:
    def refuse(pending: Any) -> None:
        raise CallRefused("budget 'team' exceeded")

    monitor.hooks.add_gate(refuse)
    with proxy(monitor, config(upstream_url)) as url:
        response = httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers=JSON_HEADERS)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "call_refused" and "budget" in response.json()["error"]["message"]
    assert upstream.seen == []
    row = recorded(monitor)[0]
    assert row["ok"] is False and row["error_type"] == "CallRefused"


def test_client_gone_during_upload_is_recorded_as_failed(proxy_url: str, upstream: Upstream, monitor: Monitor) -> None:
    port = int(proxy_url.rsplit(":", 1)[1])
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b'{"model":"gpt-4o-mini",')
        time.sleep(0.2)  # the proxy has connected upstream and forwarded the first bytes
    row = recorded(monitor)[0]
    assert row["ok"] is False and row["status_code"] is None and "disconnected" in row["error"]
    # the upstream saw the request's start and then its connection cut: never a complete request
    assert all(len(seen["body"]) < 500 for seen in upstream.seen)
