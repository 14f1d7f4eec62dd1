"""The dashboard on the proxy's port, attribution from request headers, and the proxy's own key."""

from __future__ import annotations

import httpx
import pytest

from llm_monitor_mw import BasicAuth, Monitor
from tests.conftest import records
from tests.proxy.running import config, proxy, recorded
from tests.proxy.upstream import Upstream

CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
JSON_HEADERS = {"content-type": "application/json"}


def test_dashboard_under_the_prefix_behind_basic_auth(monitor: Monitor, upstream_url: str, upstream: Upstream) -> None:
    with proxy(monitor, config(upstream_url), auth=BasicAuth("admin", "s3cret")) as url:
        httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers=JSON_HEADERS)
        assert monitor.flush(10)
        upstream.reset()
        anonymous = httpx.get(url + "/monitoring/")
        wrong = httpx.get(url + "/monitoring/", auth=("admin", "nope"))
        page = httpx.get(url + "/monitoring/", auth=("admin", "s3cret"))
        api = httpx.get(url + "/monitoring/api/requests", auth=("admin", "s3cret"))
        metrics = httpx.get(url + "/monitoring/metrics", auth=("admin", "s3cret"))
        health = httpx.get(url + "/monitoring/health", auth=("admin", "s3cret"))
        bare = httpx.get(url + "/monitoring", auth=("admin", "s3cret"))
        missing = httpx.get(url + "/monitoring/no/such/page", auth=("admin", "s3cret"))
        lookalike = httpx.get(url + "/monitoringx/echo")
    assert anonymous.status_code == wrong.status_code == 401
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert api.status_code == 200 and len(api.json()["items"]) == 1
    assert metrics.status_code == 200 and "llm" in metrics.text
    assert health.status_code == 200
    assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/monitoring/")
    assert missing.status_code == 404
    # nothing under the prefix reached the upstream; a path that merely starts with the same letters did
    assert [seen["raw_path"] for seen in upstream.seen] == ["/monitoringx/echo"]
    assert lookalike.status_code == 200


def test_no_dashboard_forwards_every_path(monitor: Monitor, upstream_url: str, upstream: Upstream) -> None:
    with proxy(monitor, config(upstream_url, dashboard_prefix=None)) as url:
        response = httpx.get(url + "/monitoring/echo")
    assert response.status_code == 200 and response.json()["raw_path"] == "/monitoring/echo"


def test_attribution_headers_become_user_and_tags_and_are_not_forwarded(
    monitor: Monitor, upstream_url: str, upstream: Upstream
) -> None:
    cfg = config(upstream_url, user_header=b"x-user", tag_headers={b"x-feature": "feature", b"x-team": "squad"})
    headers = {**JSON_HEADERS, "X-User": "alice", "X-Feature": "chat", "X-Team": "core", "X-Request-ID": "rid-42"}
    with proxy(monitor, cfg) as url:
        assert httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers=headers).status_code == 200
        httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers=JSON_HEADERS)
    first, second = recorded(monitor, 2)
    assert first["user"] == "alice"
    assert first["tags"] == {"client": "127.0.0.1", "feature": "chat", "squad": "core"}
    assert first["inbound_request_id"] == first["trace_id"] == "rid-42"
    assert second["user"] is None and second["tags"] == {"client": "127.0.0.1"}
    names = {name for name, _ in upstream.seen[0]["headers"]}
    assert not names & {"x-user", "x-feature", "x-team"}
    assert "x-request-id" in names  # an end-to-end header the operator did not name


def test_attribution_headers_forwarded_when_asked(monitor: Monitor, upstream_url: str, upstream: Upstream) -> None:
    cfg = config(upstream_url, user_header=b"x-user", forward_attribution_headers=True)
    with proxy(monitor, cfg) as url:
        httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers={**JSON_HEADERS, "X-User": "bob"})
    assert dict(upstream.seen[0]["headers"])["x-user"] == "bob"
    assert recorded(monitor)[0]["user"] == "bob"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Proxy-Key": "wrong"}, 401),
        ({"Proxy-Authorization": "Basic a2V5"}, 401),
        ({"Authorization": "Bearer proxy-key-123"}, 401),  # that header is the upstream's, not the proxy's
        ({"X-Proxy-Key": "proxy-key-123"}, 200),
        ({"Proxy-Authorization": "Bearer proxy-key-123"}, 200),
    ],
)
def test_require_key(
    monitor: Monitor, upstream_url: str, upstream: Upstream, headers: dict[str, str], status: int
) -> None:
    with proxy(monitor, config(upstream_url, proxy_key=b"proxy-key-123")) as url:
        response = httpx.post(url + "/v1/chat/completions", content=CHAT_BODY, headers={**JSON_HEADERS, **headers})
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "proxy_key_required"
        assert upstream.seen == [] and records(monitor) == []
    else:
        names = {name for name, _ in upstream.seen[0]["headers"]}
        assert not names & {"x-proxy-key", "proxy-authorization"}
        assert len(recorded(monitor)) == 1
