"""``scrub``: every key shape of the providers the package names (and AWS, HF, Stripe, GitHub...), in the messages
they come in; and what must stay (model names, request ids, ordinary words). Keys are random, fake, real-shaped."""

from __future__ import annotations

import base64
import random
import string
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.redaction import REDACTED, scrub
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import records

RNG = random.Random(9)
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "-_"


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def b64url(data: str) -> str:
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def jwt() -> str:
    return ".".join(
        [b64url('{"alg":"HS256","typ":"JWT"}'), b64url(f'{{"sub":"{rand(10)}","iat":1700000000}}'), rand(43, URLSAFE)]
    )


KEYS: dict[str, Callable[[], str]] = {
    "openai legacy": lambda: "sk-" + rand(48),
    "openai project": lambda: "sk-proj-" + rand(156, URLSAFE),
    "openai service account": lambda: "sk-svcacct-" + rand(120, URLSAFE),
    "openai admin": lambda: "sk-admin-" + rand(100, URLSAFE),
    "anthropic": lambda: "sk-ant-api03-" + rand(93, URLSAFE) + "AA",
    "anthropic admin": lambda: "sk-ant-admin01-" + rand(93, URLSAFE) + "AA",
    "deepseek": lambda: "sk-" + rand(32, HEX),
    "openrouter": lambda: "sk-or-v1-" + rand(64, HEX),
    "google": lambda: "AIza" + rand(35, URLSAFE),
    "groq": lambda: "gsk_" + rand(52),
    "xai": lambda: "xai-" + rand(80),
    "perplexity": lambda: "pplx-" + rand(48),
    "cerebras": lambda: "csk-" + rand(48, string.ascii_lowercase + string.digits),
    "fireworks": lambda: "fw_" + rand(24),
    "together": lambda: "tgp_v1_" + rand(43, URLSAFE),
    "huggingface": lambda: "hf_" + rand(34, string.ascii_letters),
    "replicate": lambda: "r8_" + rand(37),
    "stripe live": lambda: "sk_live_" + rand(99),
    "stripe test": lambda: "sk_test_" + rand(99),
    "stripe restricted": lambda: "rk_live_" + rand(99),
    "github classic": lambda: "ghp_" + rand(36),
    "github fine-grained": lambda: "github_pat_" + rand(22) + "_" + rand(59),
    "aws access key id": lambda: "AKIA" + rand(16, string.ascii_uppercase + string.digits),
    "aws temporary key id": lambda: "ASIA" + rand(16, string.ascii_uppercase + string.digits),
    "jwt": jwt,
}
"""Keys recognisable by their shape alone."""

CONTEXT_KEYS: dict[str, Callable[[], str]] = {
    "mistral": lambda: rand(32),
    "cohere": lambda: rand(40),
    "together legacy": lambda: rand(64, HEX),
    "azure openai": lambda: rand(32, HEX),
    "aws secret": lambda: rand(40, ALNUM + "/+"),
    "password": lambda: "hunter2-" + rand(6),
}
"""Keys with no shape of their own: caught where they appear (after a name, a scheme)."""

SHAPED_MESSAGES = [
    "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys.",
    "Error code: 401 - {{'error': {{'message': 'Invalid API Key {key}', 'type': 'invalid_request_error'}}}}",
    '{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key {key}"}}}}',
    "POST https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent?key={key} 400",
    "The API key {key} is not valid.",
    "{key}",
    "auth failed for key({key})",
]

CONTEXT_MESSAGES = [
    "Authorization: Bearer {key}",
    "authorization: bearer {key}",
    "Incorrect API key provided: {key}.",
    "invalid api_key={key}&model=mistral-large-latest",
    "GET /v1/models?apikey={key} 401",
    "GET /v1/models?access_token={key}&x=1",
    "token={key}",
    "x-api-key: {key}",
    "api-key: {key}",
    '{{"api_key": "{key}", "model": "command-r"}}',
    "aws_secret_access_key={key}",
    "AWS_SECRET_ACCESS_KEY = {key}",
    "MISTRAL_API_KEY={key}",
    "password: {key}",
    "proxy error for https://admin:{key}@proxy.internal:3128/",
]

NOT_SECRETS = [
    "gpt-4o-mini",
    "gpt-4.1-nano-2025-04-14",
    "claude-3-5-sonnet-20241022",
    "claude-haiku-4-5",
    "models/text-embedding-004",
    "gemini-2.5-flash:streamGenerateContent",
    "req_abc123",
    "request_id: req_011CUxYQJ5Vx1x7yDy9mrRPb",
    "x-request-id: 8f14e45f-ceea-467a-9575-1b8c1f1c7a7b",
    "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "org-AbCdEf1234567890",
    "task-oriented dialogue",
    "sk-learn is not a package; scikit-learn is",
    "sklearn",
    "max_tokens: 4096 is more than the model allows",
    "prompt_tokens=1234567890",
    "Missing required key: messages",
    "Basic authentication required",
    "Bearer token missing",
    "The token limit is 128000 tokens",
    "API key not valid. Please pass a valid API key.",
    "Rate limit reached for gpt-4o in organization org-xyz on tokens per min (TPM): Limit 30000, Used 29000.",
    "https://api.openai.com/v1/chat/completions",
    "ratelimit-remaining-tokens: 29000",
    "hf_transfer",
    "AKIA",
    "eyJhbGciOi",
]


@pytest.mark.parametrize("name", KEYS)
def test_shaped_keys_are_redacted_wherever_they_are(name: str) -> None:
    for message in SHAPED_MESSAGES + CONTEXT_MESSAGES:
        key = KEYS[name]()
        out = scrub(message.format(key=key))
        assert key not in out and REDACTED in out, (name, message, out)
        pieces = key.replace("-", "_").replace(".", "_").split("_")
        assert not [p for p in pieces if len(p) >= 12 and p in out], (name, out)  # no long piece left behind
        assert scrub(out) == out


@pytest.mark.parametrize("name", CONTEXT_KEYS)
def test_keys_without_a_shape_are_redacted_in_context(name: str) -> None:
    for message in CONTEXT_MESSAGES:
        key = CONTEXT_KEYS[name]()
        out = scrub(message.format(key=key))
        assert key not in out and REDACTED in out, (name, message, out)


def test_the_text_around_a_key_stays() -> None:
    key = KEYS["xai"]()
    assert scrub(f"Incorrect API key provided: {key}. See https://console.x.ai.") == (
        "Incorrect API key provided: [redacted]. See https://console.x.ai."
    )
    assert scrub(f"GET /v1beta/models/m:generateContent?key={KEYS['google']()}&alt=sse") == (
        "GET /v1beta/models/m:generateContent?key=[redacted]&alt=sse"
    )
    basic = base64.b64encode(b"user:" + rand(12).encode()).decode()
    assert scrub(f"Authorization: Basic {basic}") == "Authorization: Basic [redacted]"
    assert scrub("https://bob:s3cr3t@proxy:8080/") == "https://bob:[redacted]@proxy:8080/"


def test_non_secrets_stay() -> None:
    assert [scrub(text) for text in NOT_SECRETS] == NOT_SECRETS


def test_fast_enough_for_the_writer_thread() -> None:
    message = (
        "Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o-mini in organization org-abc on"
        " tokens per min (TPM): Limit 200000, Used 199500, Requested 1200. Please try again in 210ms.',"
        " 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}"
    )
    prose = "The quick brown fox jumps over the lazy dog; a task-oriented model, gpt-4o-mini, answered. " * 1100
    started = time.perf_counter()
    for _ in range(1000):
        scrub(message)
    per_message = (time.perf_counter() - started) / 1000
    started = time.perf_counter()
    scrub(prose)
    per_100kb = time.perf_counter() - started
    assert per_message < 500e-6 and per_100kb < 0.25, (per_message, per_100kb)  # ~15 us and ~5 ms measured
    adversarial = ["a-" * 50_000, "key=" * 25_000, "bearer " * 15_000, "://a:" * 20_000]
    started = time.perf_counter()
    for text in adversarial:
        scrub(text)
    assert time.perf_counter() - started < 1.0  # linear, not quadratic


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/chat/completions", KEYS["xai"]()),
        ("/v1/chat/completions", KEYS["huggingface"]()),
        ("/v1/chat/completions", KEYS["aws access key id"]()),
        ("/v1/chat/completions", KEYS["stripe live"]()),
        ("/v1/messages", KEYS["perplexity"]()),
        ("/v1beta/models/gemini-2.5-flash:generateContent", KEYS["replicate"]()),
    ],
)
def test_provider_error_messages_are_stored_without_keys(
    tmp_path: Path, fake_llm: FakeLLMServer, path: str, key: str
) -> None:
    basic = base64.b64encode(f"user:{rand(16)}".encode()).decode()
    message = f"Incorrect API key provided: {key}; also sent: Basic {basic}"
    with Monitor(tmp_path / "e.db") as monitor:
        with httpx.Client(transport=monitor.transport()) as client:
            response = client.post(
                fake_llm.base_url + path,
                json={"model": "gpt-4o-mini", "messages": [], "contents": []},
                headers={"x-fake-status": "401", "x-fake-error-message": message},
            )
        assert response.status_code == 401 and key in response.text  # the caller gets the body untouched
        (row,) = records(monitor)
    assert row["error"] is not None and "Incorrect API key provided: [redacted]" in row["error"], row["error"]
    assert key not in row["error"] and basic not in row["error"]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("e.db*"))
    assert key.encode() not in raw and basic.encode() not in raw
