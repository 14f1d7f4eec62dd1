"""One LLM call of the demo, described (:class:`Call`) and made (:func:`send`) through the real client of its
provider: the ``openai`` SDK (chat, streamed or not, Responses, embeddings), the ``anthropic`` SDK (messages),
plain ``httpx`` for Gemini (``generateContent`` / ``streamGenerateContent``) and Ollama (``/api/chat``, NDJSON).

How big the call is, how long it takes and how it fails are asked of the fake server with its ``x-fake-*``
headers: the tokens it reports, the chunks it streams, the delay between them, the status of the first attempts
(which the SDKs retry, honouring ``retry-after``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai

from .providers import Clients

TOOLS: dict[str, str] = {
    "search_docs": "Search the product documentation",
    "lookup_order": "Look up an order by its id",
    "get_weather": "Current weather for a city",
    "create_ticket": "Open a support ticket",
    "send_reply": "Send the reply to the customer",
    "run_sql": "Run a read-only SQL query on the analytics replica",
}
"""The tools the demo's agents may call (name -> description)."""


class CallFailed(Exception):
    """The provider answered with an error, after the SDK's retries (the attempts are recorded all the same)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """How the first attempts of a call fail: ``times`` attempts answer ``status`` (the SDKs retry twice, so three
    or more fail the call), each telling the client to retry after ``retry_after`` seconds; or a ``behavior``
    (``disconnect``: the connection drops mid-answer)."""

    status: int = 0
    times: int = 1
    retry_after: float = 0.4
    behavior: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """One call: which provider, model and API, what is asked, and how the fake server should answer it."""

    provider: str
    """``openai``, ``anthropic``, ``gcp.gemini`` or ``ollama``."""
    model: str
    prompt: str
    api: str = "chat"
    """OpenAI: ``chat``, ``responses`` or ``embeddings``; the other providers have one API each here."""
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    """Earlier turns as ``(role, text)``, oldest first."""
    input_tokens: int = 400
    output_tokens: int = 120
    reasoning_tokens: int | None = None
    stream: bool = False
    stream_usage: bool = True
    """OpenAI chat streams: ask for the final usage chunk (without it the tokens and cost stay unknown)."""
    latency: float = 0.2
    """Seconds the answer takes: before a non-streamed answer, spread over a stream's chunks."""
    failure: Failure | None = None
    tools: tuple[str, ...] = ()
    """Tools offered to the model (names from :data:`TOOLS`)."""
    tool_calls: tuple[str, ...] = ()
    """The tools the (fake) model asks to call in its answer."""
    extra: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        """The ``x-fake-*`` headers that make the fake server answer as described."""
        # a few chunks carry many tokens: the SDKs parse every chunk, and seeding a week must be quick
        chunks = max(1, min(self.output_tokens // 25, 12)) if self.stream else max(1, min(self.output_tokens, 40))
        delay = self.latency / (chunks + 1) if self.stream else self.latency
        headers = {
            "x-fake-prompt-tokens": str(self.input_tokens),
            "x-fake-completion-tokens": str(self.output_tokens),
            "x-fake-chunks": str(chunks),
            "x-fake-chunk-delay": f"{delay:.5f}",
        }
        # zero for the models that do not reason (the fake server reports a token of reasoning unless told)
        headers["x-fake-reasoning-tokens"] = str(self.reasoning_tokens or 0)
        if self.tools:  # the fake model calls the offered tools in order: see offered()
            headers["x-fake-tool-calls"] = str(len(self.tool_calls))
        if self.failure is not None:
            headers["x-fake-fail-times"] = str(self.failure.times)
            headers["x-fake-key"] = uuid.uuid4().hex
            headers["x-fake-retry-after"] = f"{self.failure.retry_after:g}"
            if self.failure.status:
                headers["x-fake-status"] = str(self.failure.status)
            if self.failure.behavior:
                headers["x-fake-behavior"] = self.failure.behavior
        return {**headers, **self.extra}

    def offered(self) -> tuple[str, ...]:
        """The tools offered, those the model is to call first (the fake server calls them in the offered order)."""
        return (*self.tool_calls, *(t for t in self.tools if t not in self.tool_calls))

    def messages(self) -> list[dict[str, str]]:
        """The conversation in the OpenAI / Anthropic / Ollama shape (without the system prompt)."""
        earlier = [{"role": role, "content": text} for role, text in self.history]
        return [*earlier, {"role": "user", "content": self.prompt}]


def _schema() -> dict[str, Any]:
    return {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}


async def send(clients: Clients, call: Call) -> str:
    """Make ``call``; returns the answer's text. Raises :class:`CallFailed` when the provider answered an error."""
    try:
        if call.provider == "openai":
            return await _openai(clients.openai, call)
        if call.provider == "anthropic":
            return await _anthropic(clients.anthropic, call)
        if call.provider == "gcp.gemini":
            return await _gemini(clients.gemini, call)
        if call.provider == "ollama":
            return await _ollama(clients.ollama, call)
    except (openai.APIError, anthropic.APIError, httpx.HTTPError) as exc:
        raise CallFailed(f"{call.provider} {call.model}: {exc}") from exc
    raise ValueError(f"unknown provider {call.provider!r}")


async def _openai(client: openai.AsyncOpenAI, call: Call) -> str:
    headers = call.headers()
    if call.api == "embeddings":
        await client.embeddings.create(model=call.model, input=[call.prompt], extra_headers=headers)
        return ""
    if call.api == "responses":
        kw: dict[str, Any] = {}
        if call.tools:
            kw["tools"] = [
                {"type": "function", "name": t, "description": TOOLS[t], "parameters": _schema()}
                for t in call.offered()
            ]
        if call.system:
            kw["instructions"] = call.system
        if call.stream:
            text = []
            async for event in await client.responses.create(
                model=call.model, input=call.prompt, stream=True, extra_headers=headers, **kw
            ):
                if getattr(event, "type", "") == "response.output_text.delta":
                    text.append(event.delta)
            return "".join(text)
        response = await client.responses.create(model=call.model, input=call.prompt, extra_headers=headers, **kw)
        return response.output_text
    messages: list[Any] = call.messages()
    if call.system:
        messages.insert(0, {"role": "system", "content": call.system})
    kw = {}
    if call.tools:
        kw["tools"] = [
            {"type": "function", "function": {"name": t, "description": TOOLS[t], "parameters": _schema()}}
            for t in call.offered()
        ]
    if call.stream:
        if call.stream_usage:
            kw["stream_options"] = {"include_usage": True}
        text = []
        async for chunk in await client.chat.completions.create(
            model=call.model, messages=messages, stream=True, extra_headers=headers, **kw
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
        return "".join(text)
    reply = await client.chat.completions.create(model=call.model, messages=messages, extra_headers=headers, **kw)
    return reply.choices[0].message.content or ""


async def _anthropic(client: anthropic.AsyncAnthropic, call: Call) -> str:
    kw: dict[str, Any] = {"extra_headers": call.headers()}
    if call.system:
        kw["system"] = call.system
    if call.tools:
        kw["tools"] = [{"name": t, "description": TOOLS[t], "input_schema": _schema()} for t in call.offered()]
    messages: Any = call.messages()
    if call.stream:
        text = []
        async for event in await client.messages.create(
            model=call.model, max_tokens=2048, messages=messages, stream=True, **kw
        ):
            if event.type == "content_block_delta" and getattr(event.delta, "text", None):
                text.append(event.delta.text)
        return "".join(text)
    message = await client.messages.create(model=call.model, max_tokens=2048, messages=messages, **kw)
    return "".join(getattr(block, "text", "") for block in message.content)


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise CallFailed(f"HTTP {response.status_code}")


async def _gemini(client: httpx.AsyncClient, call: Call) -> str:
    body: dict[str, Any] = {
        "contents": [
            *(
                {"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
                for role, text in call.history
            ),
            {"role": "user", "parts": [{"text": call.prompt}]},
        ]
    }
    if call.system:
        body["systemInstruction"] = {"parts": [{"text": call.system}]}
    if call.tools:
        declarations = [{"name": t, "description": TOOLS[t], "parameters": _schema()} for t in call.offered()]
        body["tools"] = [{"functionDeclarations": declarations}]
    path = f"/v1beta/models/{call.model}"
    if not call.stream:
        response = await client.post(f"{path}:generateContent", json=body, headers=call.headers())
        _check(response)
        parts = response.json()["candidates"][0]["content"]["parts"]
        return "".join(p.get("text", "") for p in parts)
    text = []
    async with client.stream(
        "POST", f"{path}:streamGenerateContent", params={"alt": "sse"}, json=body, headers=call.headers()
    ) as response:
        _check(response)
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                for candidate in json.loads(line[6:]).get("candidates", []):
                    text.extend(p.get("text", "") for p in candidate.get("content", {}).get("parts", []))
    return "".join(text)


async def _ollama(client: httpx.AsyncClient, call: Call) -> str:
    messages: list[Any] = call.messages()
    if call.system:
        messages.insert(0, {"role": "system", "content": call.system})
    body: dict[str, Any] = {"model": call.model, "messages": messages, "stream": call.stream}
    if call.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t, "description": TOOLS[t], "parameters": _schema()}}
            for t in call.offered()
        ]
    if not call.stream:
        response = await client.post("/api/chat", json=body, headers=call.headers())
        _check(response)
        return str(response.json().get("message", {}).get("content", ""))
    text = []
    async with client.stream("POST", "/api/chat", json=body, headers=call.headers()) as response:
        _check(response)
        async for line in response.aiter_lines():
            if line.strip():
                text.append(json.loads(line).get("message", {}).get("content", ""))
    return "".join(text)
