"""Realistic synthetic LLM traffic for the browser test and the documentation screenshots."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from tests.seed import insert

# provider, model, USD per 1M input/output tokens, median latency ms, share of traffic
MODELS = [
    ("openai", "gpt-4o-mini", 0.15, 0.60, 900, 0.34),
    ("openai", "gpt-4o", 2.50, 10.0, 2200, 0.14),
    ("anthropic", "claude-sonnet-4-5", 3.0, 15.0, 3100, 0.16),
    ("anthropic", "claude-haiku-4-5", 1.0, 5.0, 1100, 0.12),
    ("gcp.gemini", "gemini-2.5-flash", 0.30, 2.50, 1300, 0.12),
    ("openai", "text-embedding-3-small", 0.02, 0.0, 160, 0.12),
]
ROUTES = ["/chat", "/search", "/summarize", "/agents/{agent_id}/run", "/tickets/{id}/reply"]
FEATURES = {
    "/chat": "chat",
    "/search": "search",
    "/summarize": "summaries",
    "/agents/{agent_id}/run": "agent",
    "/tickets/{id}/reply": "support",
}
USERS = [f"user-{i:03d}" for i in range(1, 41)]
PROMPTS = {
    "chat": ("How do I rotate an API key without downtime?", "Create the new key, deploy it next to the old one, ..."),
    "search": ("Rewrite as a search query: cheap flights to Lisbon in May", "flights Lisbon May low fare"),
    "summaries": ("Summarise this support thread in two sentences: ...", "The customer cannot export invoices. ..."),
    "agent": ("Plan the next tool call for: refund order #4411", '{"tool": "lookup_order", "args": {"id": 4411}}'),
    "support": ("Draft a reply to: my dashboard shows no data", "Thanks for reaching out! Could you check ..."),
}


def records(n: int, *, now: float, days: float = 7.0, seed: int = 7) -> Iterator[CallRecord]:
    """``n`` calls spread over the last ``days`` with a daily rhythm, retries, errors, streams and tags."""
    rng = random.Random(seed)
    weights = [m[5] for m in MODELS]
    span = days * 86400
    for _ in range(n):
        while True:  # more traffic in the (UTC) working day
            t = now - rng.random() * span
            hour = (t % 86400) / 3600
            if rng.random() < 0.35 + 0.65 * math.sin(math.pi * max(0.0, min(1.0, (hour - 6) / 14))) ** 2:
                break
        provider, model, p_in, p_out, median, _ = rng.choices(MODELS, weights)[0]
        embedding = model.startswith("text-embedding")
        route = rng.choice(ROUTES)
        user = rng.choice(USERS) if rng.random() < 0.9 else None
        streamed = not embedding and rng.random() < 0.55
        inp = int(rng.lognormvariate(6.3, 0.9)) + 20
        out = 0 if embedding else int(rng.lognormvariate(5.0, 0.8)) + 5
        cached = int(inp * rng.choice([0, 0, 0.3, 0.6])) if not embedding else 0
        duration = rng.lognormvariate(math.log(median), 0.45)
        call_id = uuid.UUID(int=rng.getrandbits(128)).hex
        r = rng.random()
        tags = {"feature": FEATURES[route]}
        if rng.random() < 0.4:
            tags["team"] = rng.choice(["growth", "platform"])
        base = dict(
            provider=provider,
            operation="embeddings" if embedding else "chat",
            endpoint="/v1/embeddings" if embedding else "/v1/chat/completions",
            host={"openai": "api.openai.com", "anthropic": "api.anthropic.com"}.get(
                provider, "generativelanguage.googleapis.com"
            ),
            call_id=call_id,
            request_model=model,
            response_model=model,
            route=route,
            user=user,
            tags=tags,
            inbound_method="POST",
        )
        if r < 0.035:  # rate limited, then retried successfully
            yield CallRecord(
                started_at=t,
                status_code=429,
                error_type="rate_limit_error",
                error="Rate limit reached for requests per min (RPM): Limit 500, Used 500.",
                duration_ms=rng.uniform(80, 250),
                retry_after_s=1.0,
                attempt=1,
                **base,
            )
            t += 1.2
            base["call_id"] = call_id
            attempt = 2
        elif r < 0.045:
            yield CallRecord(
                started_at=t,
                status_code=500,
                error_type="server_error",
                error="The server had an error while processing your request.",
                duration_ms=rng.uniform(200, 3000),
                **base,
            )
            continue
        elif r < 0.05:
            yield CallRecord(
                started_at=t,
                status_code=400,
                error_type="invalid_request_error",
                error="This model's maximum context length is 128000 tokens.",
                duration_ms=rng.uniform(60, 200),
                **base,
            )
            continue
        elif r < 0.053:
            yield CallRecord(
                started_at=t,
                status_code=None,
                error_type="timeout",
                error="ReadTimeout after 30 s",
                duration_ms=30000.0,
                **base,
            )
            continue
        else:
            attempt = 1
        ttft = duration * rng.uniform(0.15, 0.4) if streamed else None
        prompt, answer = PROMPTS[tags["feature"]]
        content = (
            {}
            if embedding
            else {
                "request_content": json.dumps(
                    {"model": model, "messages": [{"role": "user", "content": prompt}]}, indent=2
                ),
                "response_content": answer,
            }
        )
        cost = (inp - cached) * p_in / 1e6 + cached * p_in * 0.1 / 1e6 + out * p_out / 1e6
        yield CallRecord(
            started_at=t,
            status_code=200,
            attempt=attempt,
            streamed=streamed,
            input_tokens=inp,
            output_tokens=out,
            total_tokens=inp + out,
            cached_tokens=cached,
            cost_usd=cost,
            duration_ms=duration,
            ttft_ms=ttft,
            ttlt_ms=duration * 0.97 if streamed else None,
            output_tokens_per_s=out / (duration / 1000) if out else None,
            finish_reason=None if embedding else "stop",
            request_id=f"req_{rng.getrandbits(48):012x}",
            ratelimit_remaining_requests=rng.randint(100, 499),
            response_bytes=rng.randint(400, 9000),
            **content,
            **base,
        )


def seed(monitor: Monitor, n: int, *, now: float, days: float = 7.0) -> None:
    """Write ``n`` synthetic calls into ``monitor`` (bypassing capture) and wait until they are on disk."""
    insert(monitor, records(n, now=now, days=days))
