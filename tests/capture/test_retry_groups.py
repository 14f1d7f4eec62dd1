"""Attempts of one logical call share a ``call_id`` for every SDK: the stainless header where sent, else an
identical request after a failure (litellm ``num_retries``, google-genai ``HttpRetryOptions``, hand-written loops).

The real SDKs against the bundled fake server; ``x-fake-fail-times`` makes the first K requests of a key fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

import httpx
import openai
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of litellm's price map from the network

import litellm
from google import genai
from google.genai import types as genai_types
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler, HTTPHandler

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.retries import RETRY_WINDOW_S
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import records

pytestmark = pytest.mark.sdk
litellm.suppress_debug_info = True

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
CLAUDE = "anthropic/claude-3-5-haiku-latest"


def failing(times: int, status: int) -> dict[str, str]:
    """Headers making the fake answer ``status`` to the first ``times`` requests (a fresh key per call)."""
    return {"x-fake-status": str(status), "x-fake-fail-times": str(times), "x-fake-key": uuid.uuid4().hex}


def attempts(rows: list[dict[str, Any]]) -> list[tuple[int, int | None, bool]]:
    return [(r["attempt"], r["status_code"], bool(r["ok"])) for r in rows]


def litellm_call(monitor: Monitor, server: FakeLLMServer, **kw: Any) -> Any:
    client = HTTPHandler(client=httpx.Client(transport=monitor.transport()))
    return litellm.completion(
        model=CLAUDE, api_base=server.base_url, api_key="sk-ant-test", messages=MESSAGES, client=client, **kw
    )


async def litellm_acall(monitor: Monitor, server: FakeLLMServer, **kw: Any) -> Any:
    client = AsyncHTTPHandler(transport=monitor.async_transport())
    return await litellm.acompletion(
        model=CLAUDE, api_base=server.base_url, api_key="sk-ant-test", messages=MESSAGES, client=client, **kw
    )


def genai_options(server: FakeLLMServer, headers: dict[str, str], **clients: Any) -> genai_types.HttpOptions:
    retry = genai_types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.05, http_status_codes=[429, 503])
    return genai_types.HttpOptions(
        base_url=server.base_url, api_version="v1beta", headers=headers, retry_options=retry, **clients
    )


@pytest.mark.parametrize("status", [503, 529, 429])
def test_litellm_num_retries_sync(status: int, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    reply = litellm_call(monitor, fake_llm, num_retries=2, extra_headers=failing(2, status))
    assert reply.choices[0].message.content
    rows = records(monitor)
    assert attempts(rows) == [(1, status, False), (2, status, False), (3, 200, True)]
    assert len({r["call_id"] for r in rows}) == 1


def test_litellm_num_retries_async(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    reply = asyncio.run(litellm_acall(monitor, fake_llm, num_retries=2, extra_headers=failing(2, 503)))
    assert reply.choices[0].message.content
    rows = records(monitor)
    assert attempts(rows) == [(1, 503, False), (2, 503, False), (3, 200, True)]
    assert len({r["call_id"] for r in rows}) == 1


def test_litellm_retries_after_connection_errors(monitor: Monitor) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HTTPHandler(client=httpx.Client(transport=monitor.transport()))
    with pytest.raises((litellm.exceptions.InternalServerError, litellm.exceptions.APIConnectionError)):
        litellm.completion(
            model=CLAUDE,
            api_base=f"http://127.0.0.1:{port}",
            api_key="sk-ant-test",
            messages=MESSAGES,
            client=client,
            num_retries=2,
        )
    rows = records(monitor)
    assert attempts(rows) == [(1, None, False), (2, None, False), (3, None, False)]
    assert {r["error_type"] for r in rows} == {"ConnectError"}
    assert len({r["call_id"] for r in rows}) == 1


def test_genai_retry_options_sync(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    http = httpx.Client(transport=monitor.transport())
    client = genai.Client(api_key="gm-test", http_options=genai_options(fake_llm, failing(2, 503), httpx_client=http))
    reply = client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
    assert reply.text
    rows = records(monitor)
    assert attempts(rows) == [(1, 503, False), (2, 503, False), (3, 200, True)]
    assert len({r["call_id"] for r in rows}) == 1
    assert rows[0]["provider"] and rows[0]["endpoint"].endswith(":generateContent")


def test_genai_retry_options_async_over_httpx(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> str | None:
        http = httpx.AsyncClient(transport=monitor.async_transport())
        options = genai_options(fake_llm, failing(2, 429), httpx_async_client=http)
        client = genai.Client(api_key="gm-test", http_options=options)
        reply = await client.aio.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
        return reply.text

    assert asyncio.run(main())
    rows = records(monitor)
    assert attempts(rows) == [(1, 429, False), (2, 429, False), (3, 200, True)]
    assert len({r["call_id"] for r in rows}) == 1


def test_identical_successful_calls_are_two_calls(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    litellm_call(monitor, fake_llm)
    litellm_call(monitor, fake_llm)
    rows = records(monitor)
    assert attempts(rows) == [(1, 200, True), (1, 200, True)]
    assert rows[0]["call_id"] != rows[1]["call_id"]


def test_a_client_error_is_not_retried_so_not_grouped(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    for _ in range(2):  # a 400 is the caller's mistake: repeating it is a new call
        with pytest.raises(litellm.exceptions.BadRequestError):
            litellm_call(monitor, fake_llm, extra_headers={"x-fake-status": "400"})
    rows = records(monitor)
    assert [r["attempt"] for r in rows] == [1, 1]
    assert rows[0]["call_id"] != rows[1]["call_id"]


class Clock:
    """A monotonic clock the test steps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def post(http: httpx.Client, server: FakeLLMServer, body: bytes, headers: dict[str, str]) -> None:
    http.post(
        server.base_url + "/v1/messages",
        content=body,
        headers={"content-type": "application/json", "x-api-key": "sk-ant-test", **headers},
    )


BODY = b'{"model":"claude-3-5-haiku-latest","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}]}'


@pytest.mark.parametrize(("after", "same_call"), [(RETRY_WINDOW_S - 1, True), (RETRY_WINDOW_S + 1, False)])
def test_window_after_a_failure(after: float, same_call: bool, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    clock = Clock()
    monitor._capturer.retries.clock = clock
    http = httpx.Client(transport=monitor.transport())
    headers = failing(1, 503)
    post(http, fake_llm, BODY, headers)
    clock.now += after
    post(http, fake_llm, BODY, headers)
    rows = records(monitor)
    assert [r["status_code"] for r in rows] == [503, 200]
    assert (rows[0]["call_id"] == rows[1]["call_id"]) is same_call
    assert [r["attempt"] for r in rows] == ([1, 2] if same_call else [1, 1])


@pytest.mark.parametrize(
    ("second_body", "query", "same_call"),
    [(BODY, "", True), (BODY.replace(b"hello", b"hullo"), "", False), (BODY, "?beta=true", False)],
    ids=["same", "other-body", "other-query"],
)
def test_only_an_identical_request_continues_a_failed_one(
    second_body: bytes, query: str, same_call: bool, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    http = httpx.Client(transport=monitor.transport())
    headers = failing(1, 500)
    post(http, fake_llm, BODY, headers)
    http.post(
        fake_llm.base_url + "/v1/messages" + query,
        content=second_body,
        headers={"content-type": "application/json", "x-api-key": "sk-ant-test", **headers},
    )
    rows = records(monitor)
    assert [r["status_code"] for r in rows] == [500, 200]
    assert (rows[0]["call_id"] == rows[1]["call_id"]) is same_call


def test_openai_sdk_retries_still_follow_the_header(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    http = httpx.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=2)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=failing(2, 429))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # identical, after a success
    rows = records(monitor)
    assert attempts(rows) == [(1, 429, False), (2, 429, False), (3, 200, True), (1, 200, True)]
    assert len({r["call_id"] for r in rows[:3]}) == 1 and rows[3]["call_id"] != rows[0]["call_id"]


def test_an_outer_loop_around_the_openai_sdk_is_grouped(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # litellm and tenacity loops around the SDK resend with x-stainless-retry-count: 0 each time.
    http = httpx.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=1)
    headers = failing(3, 503)
    for _ in range(2):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
        except openai.InternalServerError:
            continue
        break
    rows = records(monitor)
    assert attempts(rows) == [(1, 503, False), (2, 503, False), (3, 503, False), (4, 200, True)]
    assert len({r["call_id"] for r in rows}) == 1


def test_concurrent_tasks_retrying_stay_separate(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # The same body and URL in both tasks, failing at the same time: only the task's own failure continues.
    async def main() -> None:
        calls = [litellm_acall(monitor, fake_llm, num_retries=2, extra_headers=failing(2, 503)) for _ in range(2)]
        await asyncio.gather(*calls)

    asyncio.run(main())
    rows = records(monitor)
    assert len(rows) == 6
    by_call: dict[str, list[tuple[int, int | None, bool]]] = {}
    for row in rows:
        by_call.setdefault(row["call_id"], []).append((row["attempt"], row["status_code"], bool(row["ok"])))
    assert sorted(by_call.values()) == [[(1, 503, False), (2, 503, False), (3, 200, True)]] * 2


def test_two_threads_retrying_stay_separate(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            litellm_call(monitor, fake_llm, num_retries=2, extra_headers=failing(2, 429))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    rows = records(monitor)
    calls = {r["call_id"] for r in rows}
    assert len(rows) == 6 and len(calls) == 2
    for call in calls:
        assert sorted(r["attempt"] for r in rows if r["call_id"] == call) == [1, 2, 3]


def test_a_failure_inherited_by_two_tasks_is_continued_once(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # Tasks start with a copy of their parent's context, so both see the parent's failed attempt.
    headers = failing(1, 503)

    async def main() -> None:
        async with httpx.AsyncClient(transport=monitor.async_transport()) as http:

            async def send() -> None:
                await http.post(
                    fake_llm.base_url + "/v1/messages",
                    content=BODY,
                    headers={"content-type": "application/json", "x-api-key": "sk-ant-test", **headers},
                )

            await send()
            await asyncio.gather(send(), send())

    asyncio.run(main())
    rows = records(monitor)
    assert [r["status_code"] for r in rows] == [503, 200, 200]
    assert len({r["call_id"] for r in rows}) == 2
    assert sorted(r["attempt"] for r in rows) == [1, 1, 2]
