"""Header filtering, prefix routes and configuration checks, without a server."""

from __future__ import annotations

import pytest

from llm_monitor_mw.proxy import ProxyConfig, RouteError, RouteTable, parse_route, parse_upstream, tag_header
from llm_monitor_mw.proxy.headers import request_headers, response_headers


def test_request_headers_drop_hop_by_hop_and_named_ones() -> None:
    headers = [
        (b"host", b"proxy:8001"),
        (b"connection", b"X-Secret , close"),
        (b"x-secret", b"1"),
        (b"te", b"trailers"),
        (b"proxy-authorization", b"Bearer k"),
        (b"x-user", b"alice"),
        (b"authorization", b"Bearer sk-upstream"),
        (b"content-length", b"2"),
    ]
    forwarded, found = request_headers(headers, {b"x-user": False, b"proxy-authorization": False})
    assert forwarded == [(b"authorization", b"Bearer sk-upstream"), (b"content-length", b"2")]
    assert found == {b"x-user": b"alice", b"proxy-authorization": b"Bearer k"}
    forwarded, _ = request_headers(headers, {b"x-user": True})
    assert (b"x-user", b"alice") in forwarded


def test_response_headers_lower_case_and_drop_hop_by_hop() -> None:
    headers = [(b"Content-Type", b"text/event-stream"), (b"Connection", b"X-A"), (b"X-A", b"1"), (b"X-B", b"2")]
    headers += [(b"Transfer-Encoding", b"chunked"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]
    assert response_headers(headers) == [
        (b"content-type", b"text/event-stream"),
        (b"x-b", b"2"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_routes_longest_prefix_whole_segments_and_stripped() -> None:
    table = RouteTable(
        [
            parse_route("/anthropic=https://api.anthropic.com"),
            parse_route("/anthropic/beta=http://127.0.0.1:9/base/"),
            ("/", parse_upstream("https://api.openai.com")),
        ]
    )
    up, rest = table.match(b"/anthropic/v1/messages") or (None, None)
    assert up is not None and up.label == "https://api.anthropic.com" and rest == b"/v1/messages"
    up, rest = table.match(b"/anthropic/beta/v1/x") or (None, None)
    assert up is not None and str(up.target(rest or b"", b"a=1")) == "http://127.0.0.1:9/base/v1/x?a=1"
    up, rest = table.match(b"/anthropics/v1") or (None, None)
    assert up is not None and up.label == "https://api.openai.com" and rest == b"/anthropics/v1"
    up, rest = table.match(b"/anthropic") or (None, None)
    assert rest == b"/"
    assert RouteTable([parse_route("/a=http://x")]).match(b"/b") is None


@pytest.mark.parametrize(
    "spec", ["nothing", "/a=", "/a=ftp://x", "/../a=http://x", "/a=http://x?q=1", "/a b=http://x", "/a=http://u:p@x"]
)
def test_bad_routes(spec: str) -> None:
    with pytest.raises(RouteError):
        parse_route(spec)


def test_tag_header_names() -> None:
    assert tag_header("X-Feature") == (b"x-feature", "feature")
    assert tag_header("X-Feature=feat") == (b"x-feature", "feat")
    for bad in ("X Feature", "X-User=user", "X-A=client", "X-A=a b"):
        with pytest.raises(RouteError):
            tag_header(bad)


def test_config_checks() -> None:
    table = RouteTable([parse_route("/monitoring/x=http://x")])
    with pytest.raises(RouteError, match="under the dashboard prefix"):
        ProxyConfig(routes=table)
    ProxyConfig(routes=table, dashboard_prefix=None)
    with pytest.raises(RouteError):
        ProxyConfig(routes=RouteTable([]), dashboard_prefix="/")
    with pytest.raises(RouteError):
        ProxyConfig(routes=RouteTable([]), proxy_key=b"")
    with pytest.raises(RouteError):
        RouteTable([parse_route("/a=http://x"), parse_route("/a/=http://y")])
