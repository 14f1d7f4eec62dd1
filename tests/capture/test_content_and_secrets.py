"""Content capture is opt-in, truncated and redacted; API keys never reach the database."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records

KEY = "sk-proj-THISISASECRETKEY1234567890"
GEMINI_KEY = "AIzaSyTHISISASECRETGOOGLEKEY123456"


def db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@pytest.mark.sdk
def test_content_not_stored_by_default(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    http = httpx.Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key=KEY, http_client=http)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "my private prompt"}])
    row = monitor.store.queries.request(only_record(monitor)["id"])
    assert row is not None and row["request_content"] is None and row["response_content"] is None
    assert b"my private prompt" not in db_bytes(Path(monitor.path))


def test_content_capture_truncates_and_redacts(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    def redact(text: str) -> str:
        return text.replace("alice@example.com", "<email>")

    with Monitor(tmp_path / "c.db", capture_content=True, content_limit=60, redact=redact) as monitor:
        http = httpx.Client(transport=monitor.transport())
        client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key=KEY, http_client=http)
        prompt = "mail alice@example.com " + "x" * 500
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        for _ in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
        plain, streamed = (monitor.store.queries.request(r["id"]) for r in records(monitor))
        assert plain is not None and streamed is not None
        assert "<email>" in plain["request_content"] and "alice@example.com" not in plain["request_content"]
        assert plain["request_content"].endswith("…[truncated]") and len(plain["request_content"]) < 80
        assert plain["response_content"] == "Hello from the fake LLM."
        assert streamed["response_content"] == "Hello from the fake LLM."


def test_failing_redact_hook_drops_content_keeps_record(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    def redact(text: str) -> str:
        raise RuntimeError("hook bug")

    with Monitor(tmp_path / "c.db", capture_content=True, redact=redact) as monitor:
        with httpx.Client(transport=monitor.transport()) as client:
            client.post(fake_llm.base_url + "/v1/chat/completions", json={"model": "m", "messages": []})
        row = monitor.store.queries.request(only_record(monitor)["id"])
        assert row is not None and row["request_content"] is None and row["total_tokens"] is not None


def test_keys_never_stored_even_with_content_capture(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    with Monitor(tmp_path / "k.db", capture_content=True) as monitor:
        with httpx.Client(transport=monitor.transport()) as client:
            client.post(
                fake_llm.base_url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": f"my key is {KEY}"}]},
                headers={"Authorization": f"Bearer {KEY}", "x-api-key": KEY, "x-fake-status": "401"},
            )
            client.post(
                f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent?key={GEMINI_KEY}",
                json={"contents": []},
                headers={"x-goog-api-key": GEMINI_KEY},
            )
        assert len(records(monitor)) == 2
        raw = db_bytes(tmp_path / "k.db")
        assert KEY.encode() not in raw and GEMINI_KEY.encode() not in raw
        assert b"THISISASECRET" not in raw
