"""instrument_httpx(): every httpx/httpx2 client created afterwards is captured, keeping its own transport."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.httplibs import LIBRARIES
from llm_monitor_mw.capture.transport import AsyncMonitorTransport, MonitorTransport
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import records

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_instrument_then_uninstrument(lib: object, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    before = lib.Client()  # type: ignore[attr-defined]
    monitor.instrument_httpx()
    try:
        with lib.Client() as client:  # type: ignore[attr-defined]
            assert isinstance(client._transport, MonitorTransport)
            client.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)

        async def main() -> None:
            async with lib.AsyncClient() as aclient:  # type: ignore[attr-defined]
                assert isinstance(aclient._transport, AsyncMonitorTransport)
                await aclient.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)

        asyncio.run(main())
        before.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)  # made before: not captured
    finally:
        monitor.uninstrument_httpx()
    with lib.Client() as after:  # type: ignore[attr-defined]
        assert not isinstance(after._transport, MonitorTransport)
        after.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)
    before.close()
    assert len(records(monitor)) == 2


def test_instrument_keeps_mounts_and_their_settings(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    monitor.instrument_httpx()
    try:
        custom = httpx.HTTPTransport(retries=2)
        client = httpx.Client(mounts={"http://127.0.0.1": custom})
    finally:
        monitor.uninstrument_httpx()
    mounted = next(iter(client._mounts.values()))
    assert isinstance(mounted, MonitorTransport) and mounted._inner is custom
    client.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)
    client.close()
    assert len(records(monitor)) == 1


@pytest.mark.sdk
def test_instrumented_sdk_default_client(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    monitor.instrument_httpx()
    try:
        client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="k")  # the SDK's own http client
        client.chat.completions.create(model="gpt-4o-mini", messages=BODY["messages"])  # type: ignore[arg-type]
    finally:
        monitor.uninstrument_httpx()
    assert records(monitor)[0]["total_tokens"] == 16


def test_double_instrument_is_refused(monitor: Monitor, tmp_path: object) -> None:
    other = Monitor(str(tmp_path) + "/other.db")  # type: ignore[operator]
    monitor.instrument_httpx()
    try:
        with pytest.raises(RuntimeError, match="already instrumented"):
            other.instrument_httpx()
    finally:
        monitor.uninstrument_httpx()
        other.close()


def test_tags_follow_tasks_and_threads(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def call(client: httpx.AsyncClient, name: str) -> None:
        with monitor.tags(task=name):
            await client.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)

    async def main() -> None:
        async with httpx.AsyncClient(transport=monitor.async_transport()) as client:
            with monitor.tags(feature="summarize", user="alice"):
                await asyncio.gather(call(client, "a"), call(client, "b"))
                await asyncio.to_thread(sync_call)

    def sync_call() -> None:
        with monitor.tags(user="bob"), httpx.Client(transport=monitor.transport()) as client:
            client.post(fake_llm.base_url + "/v1/chat/completions", json=BODY)

    asyncio.run(main())
    tags = sorted((r["tags"] for r in records(monitor)), key=lambda t: sorted(t.items()))
    assert {"feature": "summarize", "user": "alice", "task": "a"} in tags
    assert {"feature": "summarize", "user": "alice", "task": "b"} in tags
    assert {"feature": "summarize", "user": "bob"} in tags
