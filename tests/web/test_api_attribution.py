"""The JSON API's attribution filters: ``route=``, ``user=``, ``tag=key:value`` and ``q=`` text search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from tests.seed import insert

T0 = 1_780_000_000.0
PREFIX = "/monitoring"


def make(i: int, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": T0 + i,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "status_code": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_usd": 0.001,
        "duration_ms": 10.0,
    }
    base.update(kw)
    return CallRecord(**base)


CHAT = {"route": "/chat/{chat_id}", "user": "alice", "inbound_method": "POST"}
SEARCH = {"route": "/search", "user": "bob"}
CLAUDE = {"request_model": "claude-haiku-4-5", "response_model": "claude-haiku-4-5"}
ROWS = [
    *(make(i, **CHAT, inbound_request_id=f"r{i}") for i in range(4)),
    *(make(10 + i, **SEARCH, tags={"feature": "search", "team.name": "core-1"}) for i in range(3)),
    make(20, **SEARCH, **CLAUDE, tags={"feature": "rerank"}, status_code=429, error_type="rate_limit_error",
         error="Slow down 100%_now"),
    make(21, tags={"feature": "search"}),  # not from a web request
]  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    monitor = Monitor(Path(tmp_path_factory.mktemp("api_attr")) / "api.db")
    insert(monitor, ROWS)
    host = Starlette(routes=[Mount(PREFIX, app=monitor.asgi_app())])
    with TestClient(host, base_url="http://test") as c:
        yield c
    monitor.close()


def get(client: httpx.Client, path: str, **params: str) -> httpx.Response:
    return client.get(f"{PREFIX}/api/{path}", params=params)


@pytest.mark.parametrize(
    ("params", "total"),
    [
        ({"route": "/chat/{chat_id}"}, 4),
        ({"route": "/search"}, 4),
        ({"route": "/chat/7"}, 0),  # templates, not raw paths
        ({"user": "alice"}, 4),
        ({"user": "bob", "route": "/search"}, 4),
        ({"user": "bob", "status": "error"}, 1),
        ({"tag": "feature:search"}, 4),
        ({"tag": "feature:rerank"}, 1),
        ({"tag": "team.name:core-1"}, 3),  # dots in keys are literal, not JSON-path steps
        ({"tag": "feature:"}, 0),
        ({"tag": "missing:x"}, 0),
        ({"q": "rate_limit"}, 1),  # error type
        ({"q": "SLOW DOWN"}, 1),  # error text, case-insensitive
        ({"q": "100%_"}, 1),  # LIKE wildcards are searched literally
        ({"q": "1%"}, 0),
        ({"q": "claude"}, 1),  # model
        ({"q": "gpt-4o"}, 8),
        ({"route": ""}, 9),  # empty = no constraint
    ],
)
def test_requests_attribution_filters(client: httpx.Client, params: dict[str, str], total: int) -> None:
    data = get(client, "requests", **params).json()
    assert data["total"] == total, data
    assert len(data["items"]) == total


def test_items_carry_the_inbound_request(client: httpx.Client) -> None:
    [item] = get(client, "requests", route="/chat/{chat_id}", limit="1").json()["items"]
    assert item["route"] == "/chat/{chat_id}" and item["user"] == "alice"
    assert item["inbound_method"] == "POST" and item["inbound_request_id"] == "r3"


def test_summary_filters(client: httpx.Client) -> None:
    data = get(client, "summary", user="bob", tag="feature:search").json()
    assert data["requests"] == 3 and data["errors"] == 0
    assert get(client, "summary", q="slow down").json()["requests"] == 1
    assert get(client, "summary", route="/chat/{chat_id}").json()["input_tokens"] == 40


@pytest.mark.parametrize("path", ["requests", "summary"])
@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"tag": "feature"}, "tag"),  # no colon
        ({"tag": ":search"}, "tag"),  # empty key
        ({"tag": "fe\x00ature:x"}, "tag"),  # control characters (any key without them is matched literally)
        ({"tag": "feature:x\x1b"}, "tag"),
        ({"tag": "k" * 101 + ":x"}, "tag"),
        ({"q": "x" * 201}, "q"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_bad_attribution_parameters(client: httpx.Client, path: str, params: dict[str, str], parameter: str) -> None:
    answer = get(client, path, **params)
    assert answer.status_code == 400
    assert answer.json()["parameter"] == parameter and answer.json()["error"]


def test_longest_q_is_accepted(client: httpx.Client) -> None:
    assert get(client, "requests", q="x" * 200).json()["total"] == 0
