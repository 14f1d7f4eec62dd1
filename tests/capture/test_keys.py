"""Key fingerprints and hints: stable per database, distinct per key and per database, never the key."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.keys import bare_key, fingerprint, hint, identify
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records
from tests.httplibs import libs_for_anthropic, libs_for_openai

OPENAI_KEY = "sk-proj-Q7ZKmR2xLp9VtY4nB8cW3dF6hJ1sA5eG0uI2oP7wxyz"
ANTHROPIC_KEY = "sk-ant-api03-T4kXq9Lm2Vb7Nc3Zr8Hs1Jd6Fg0Pw5Ye-AbCdEfGh1234"
GEMINI_KEY = "AIzaSyD3fK8mQ2rT7vX1bN5cJ9hL4pW6sZ0gE-9kq"


def openai_call(monitor: Monitor, server: FakeLLMServer, key: str = OPENAI_KEY) -> None:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, http_client=http, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def fingerprints(monitor: Monitor) -> list[str | None]:
    ids = [r["id"] for r in records(monitor)]
    return [monitor.store.queries.request(i)["key_fingerprint"] for i in ids]  # type: ignore[index]


def detail(monitor: Monitor) -> dict:
    row = monitor.store.queries.request(only_record(monitor)["id"])
    assert row is not None
    return row


# -- hints and fingerprints, from the bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (OPENAI_KEY, "sk-proj-…wxyz"),
        (ANTHROPIC_KEY, "sk-ant-api03-…1234"),
        (GEMINI_KEY, "AIza…-9kq"),
        ("sk-0123456789abcdefghijKLMN", "sk-…KLMN"),
        ("gsk_0123456789abcdefghijKLMN", "gsk_…KLMN"),
        ("0123456789abcdef0123456789abcdef", "…cdef"),  # Azure: 32 hex digits, no prefix
        ("sk-short", "…"),  # under 20 characters: nothing of it
        ("x" * 19, "…"),
        ("sk-proj-0123456789abcde", "sk-proj-…"),  # 15 characters past the prefix: no tail either
        ("sk-proj-0123456789abcdef\x00\x01\x02", "sk-proj-…"),  # an end that is no printable ASCII
    ],
)
def test_hint(key: str, expected: str) -> None:
    shown = hint(key.encode("latin-1"))
    assert shown == expected
    secret_part = key[len(shown.split("…")[0]) : -4]
    assert secret_part and secret_part not in shown


def test_bearer_and_other_schemes() -> None:
    assert bare_key(b"Bearer " + OPENAI_KEY.encode()) == OPENAI_KEY.encode()
    assert bare_key(b"bearer   " + OPENAI_KEY.encode() + b"  ") == OPENAI_KEY.encode()
    assert bare_key(b"Bearer ") is None and bare_key(b"  ") is None
    basic = b"Basic dXNlcjpwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ="
    found = identify(basic, b"s")
    assert found is not None and found.hint == "…"  # the end of a Basic credential is the end of a password
    assert identify(None, b"s") is None and identify(b"", b"s") is None


def test_fingerprint_is_the_hmac_prefix() -> None:
    import hashlib
    import hmac

    secret = bytes(range(32))
    expected = hmac.new(secret, OPENAI_KEY.encode(), hashlib.sha256).hexdigest()[:16]
    assert fingerprint(secret, OPENAI_KEY.encode()) == expected
    assert identify(b"Bearer " + OPENAI_KEY.encode(), secret) == (expected, "sk-proj-…wxyz")
    assert identify(OPENAI_KEY.encode(), None) == (None, "sk-proj-…wxyz")


# -- through the transport ------------------------------------------------------------------------------------


@pytest.mark.sdk
def test_same_database_same_fingerprint_other_database_other(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    with Monitor(tmp_path / "a.db", flush_interval=0.05) as first:
        openai_call(first, fake_llm)
        openai_call(first, fake_llm, "sk-proj-" + "Z" * 40 + "wxyz")  # another key, the same hint
        (one, other) = fingerprints(first)
    with Monitor(tmp_path / "a.db", flush_interval=0.05) as again:
        openai_call(again, fake_llm)
        assert fingerprints(again)[-1] == one
    with Monitor(tmp_path / "b.db", flush_interval=0.05) as elsewhere:
        openai_call(elsewhere, fake_llm)
        (there,) = fingerprints(elsewhere)
    assert one and other and there
    assert len({one, other, there}) == 3
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in (one, other, there))


@pytest.mark.sdk
def test_openai_sdk_bearer(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    openai_call(monitor, fake_llm)
    row = detail(monitor)
    assert row["key_hint"] == "sk-proj-…wxyz" and row["key_fingerprint"]


@pytest.mark.sdk
def test_anthropic_sdk_x_api_key(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    http = libs_for_anthropic()[0].Client(transport=monitor.transport())
    client = anthropic.Anthropic(base_url=fake_llm.base_url, api_key=ANTHROPIC_KEY, http_client=http)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    row = detail(monitor)
    assert row["key_hint"] == "sk-ant-api03-…1234" and row["key_fingerprint"]


def test_google_genai_header(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    options = types.HttpOptions(
        base_url=fake_llm.base_url, api_version="v1beta", httpx_client=httpx.Client(transport=monitor.transport())
    )
    client = genai.Client(api_key=GEMINI_KEY, http_options=options)
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    row = detail(monitor)
    assert row["key_hint"] == "AIza…-9kq" and row["key_fingerprint"]


def test_gemini_key_query_parameter(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        url = f"{fake_llm.base_url}/v1beta/models/gemini-2.5-flash:generateContent?alt=json&key={GEMINI_KEY}"
        client.post(url, json={"contents": [{"parts": [{"text": "hi"}]}]})
        client.post(url.replace(f"key={GEMINI_KEY}", "key="), json={"contents": []})
        client.post(url, json={"contents": []}, headers={"x-goog-api-key": GEMINI_KEY})
    with_query, empty, with_header = (monitor.store.queries.request(r["id"]) for r in records(monitor))
    assert with_query and empty and with_header
    assert with_query["key_hint"] == "AIza…-9kq" and with_query["key_fingerprint"]
    assert with_header["key_fingerprint"] == with_query["key_fingerprint"]  # one key, however it was sent
    assert empty["key_fingerprint"] is None and empty["key_hint"] is None
    assert GEMINI_KEY not in with_query["endpoint"]


def test_no_key_no_fingerprint(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    with httpx.Client(transport=monitor.transport()) as client:
        client.post(fake_llm.base_url + "/v1/chat/completions", json={"model": "m", "messages": []})
    row = detail(monitor)
    assert row["key_fingerprint"] is None and row["key_hint"] is None


def test_credential_dropped_after_use(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    seen: list[object] = []
    with Monitor(tmp_path / "c.db", flush_interval=0.05) as monitor:
        original = monitor._prepare

        def prepare(pending):  # type: ignore[no-untyped-def]
            record = original(pending)
            seen.append(pending.credential)
            return record

        monitor.store.writer.prepare = prepare
        openai_call(monitor, fake_llm)
        assert detail(monitor)["key_fingerprint"]
    assert seen == [None]


def test_unreachable_database_records_without_fingerprint(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    """A secret that cannot be read: the call is recorded with its hint, no fingerprint, and nothing raised."""
    with Monitor(tmp_path / "d.db", flush_interval=0.05) as monitor:
        engine = monitor.store.engine
        engine.connection().execute("DROP TABLE llm_monitor_secrets")  # the secret's transaction now fails
        openai_call(monitor, fake_llm)
        row = detail(monitor)
        assert row["key_hint"] == "sk-proj-…wxyz" and row["key_fingerprint"] is None
        assert monitor.options.key_secret is not None and monitor.options.key_secret() is None  # retried later
