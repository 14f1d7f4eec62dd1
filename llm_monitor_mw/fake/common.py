"""What every provider module of the fake LLM shares: the deterministic reply, token constants, JSON/SSE/NDJSON
framing, embedding vectors, and the per-request context and stream plan a route handler builds its answer from."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

REPLY_WORDS = ("Hello", "from", "the", "fake", "LLM.")
REPLY_TEXT = " ".join(REPLY_WORDS)
DEFAULT_CHUNKS = 5
BASE_PROMPT_TOKENS = 10
CACHED_TOKENS = 2
REASONING_TOKENS = 1
EMBEDDING_DIM = 8
BIG_BODY_CHARS = 5 * 1024 * 1024
AZURE_CHAT_MODEL = "gpt-4o-2024-08-06"
AZURE_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_MODEL = "fake-model"

JSON = dict[str, Any]
Frame = tuple[str, bytes]  # (kind, raw bytes); kind is "head", "content" or "tail"

SSE_MEDIA = "text/event-stream; charset=utf-8"
NDJSON_MEDIA = "application/x-ndjson"
JSON_MEDIA = "application/json"


class SimulatedDisconnect(Exception):
    """Raised inside a streaming body to make uvicorn abort the connection mid-response."""


def reply_pieces(n_chunks: int = DEFAULT_CHUNKS) -> list[str]:
    """The streamed content pieces for ``n_chunks`` chunks; ``"".join()`` gives the full reply text."""
    return [("" if i == 0 else " ") + REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(max(0, n_chunks))]


def big_pieces(n_chunks: int) -> list[str]:
    text = ("lorem ipsum dolor sit amet " * (BIG_BODY_CHARS // 27 + 1))[:BIG_BODY_CHARS]
    n = max(1, n_chunks)
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def sse_frame(data: Any, event: str | None = None, sep: str = "\n\n") -> bytes:
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}{sep}".encode()


def ndjson_line(data: Any) -> bytes:
    return (dumps(data) + "\n").encode()


def rid(prefix: str, n: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:n]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def count_items(value: Any) -> int:
    """How many prompt items ``value`` holds (a string or a token list is one item)."""
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)
    return 1 if value else 0


def embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return list(value)
    return [value]


def vector(index: int) -> list[float]:
    """Deterministic, exactly float32-representable values (so base64 round trips are exact)."""
    return [(i + 1) / 16 + index / 256 for i in range(EMBEDDING_DIM)]


def vector_b64(index: int) -> str:
    return base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *vector(index))).decode("ascii")


@dataclass
class Ctx:
    """Everything a route handler needs to build its answer."""

    provider: str  # "openai" | "anthropic" | "gemini" | "ollama"
    request: Request
    body: JSON
    model: str
    pieces: list[str]
    completion_tokens: int
    forced_tools: int | None = None
    """``x-fake-tool-calls: N``: answer with ``N`` tool calls (0: never), whatever the request."""

    def __post_init__(self) -> None:
        fixed = self.request.headers.get("x-fake-completion-tokens", "")
        if fixed.isdigit():  # long answers in a few chunks (the demo's realistic sizes)
            self.completion_tokens = int(fixed)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def prompt_tokens(self, items: int) -> int:
        """``x-fake-prompt-tokens`` when the request sets it (the demo's realistic sizes), else 10 + items."""
        fixed = self.request.headers.get("x-fake-prompt-tokens", "")
        return int(fixed) if fixed.isdigit() else BASE_PROMPT_TOKENS + items

    @property
    def reasoning_tokens(self) -> int:
        fixed = self.request.headers.get("x-fake-reasoning-tokens", "")
        return min(int(fixed) if fixed.isdigit() else REASONING_TOKENS, self.completion_tokens)


@dataclass
class StreamPlan:
    """A streamed answer: the frames in order, plus what the behaviours need to mangle it."""

    media_type: str
    frames: list[Frame] = field(default_factory=list)
    error_frame: Callable[[int], bytes] = lambda _pos: b""  # the provider's in-stream error at a frame position
    garbage: tuple[bytes, ...] = (b"data: {not json\n\n", b"this line is not SSE at all\n\n")

    def add(self, kind: str, frame: bytes) -> None:
        self.frames.append((kind, frame))


MAX_FAKE_TOOL_CALLS = 10_000
DEFAULT_TOOL = "get_weather"
_SAMPLES: dict[str, Any] = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}


@dataclass
class FakeToolCall:
    """One tool call the fake model asks for: an id in the provider's style, the tool's name, sample arguments."""

    id: str
    name: str
    arguments: JSON

    @property
    def arguments_json(self) -> str:
        return dumps(self.arguments)

    def argument_pieces(self, n: int = 3) -> list[str]:
        """The arguments' JSON text in ``n`` pieces, as a stream sends it."""
        text = self.arguments_json
        size = max(1, -(-len(text) // n))
        return [text[i : i + size] for i in range(0, len(text), size)]


def sample_arguments(schema: Any) -> JSON:
    """Arguments that fit a JSON schema's top-level properties (a default for a tool without a schema)."""
    if not isinstance(schema, dict):
        return {"location": "Paris"}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    out: JSON = {}
    for name, prop in list(properties.items())[:8]:
        kind = prop.get("type") if isinstance(prop, dict) else None
        out[str(name)] = _SAMPLES.get(kind.lower() if isinstance(kind, str) else "string", "Paris")
    return out


def tool_calls(
    ctx: Ctx, declared: list[tuple[str, Any]], user_turn: bool, id_prefix: str, id_len: int = 24
) -> list[FakeToolCall]:
    """The tool calls to answer with: one when the request offers tools and its last turn is the user's (the
    first offered tool), or ``x-fake-tool-calls: N`` of them (cycling through the offered tools, else
    ``get_weather``); none otherwise. ``declared``: the request's ``(name, parameters schema)`` pairs."""
    n = ctx.forced_tools
    if n is None:
        n = 1 if declared and user_turn else 0
    n = min(max(0, n), MAX_FAKE_TOOL_CALLS)
    choices = declared or [(DEFAULT_TOOL, None)]
    return [
        FakeToolCall(rid(id_prefix, id_len), name, sample_arguments(schema))
        for name, schema in (choices[i % len(choices)] for i in range(n))
    ]


def function_tools(tools: Any, nested: bool = True) -> list[tuple[str, Any]]:
    """``(name, parameters)`` of the function tools in an OpenAI-style ``tools`` list: ``{"type": "function",
    "function": {...}}`` (chat completions, Ollama) or, ``nested=False``, flat (the Responses API)."""
    out: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        spec = tool.get("function") if nested else tool
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            out.append((spec["name"], spec.get("parameters")))
    return out


def last_role(items: Any) -> str | None:
    """The ``role`` of the last message of a list (``None`` if there is none)."""
    if isinstance(items, list) and items and isinstance(items[-1], dict):
        role = items[-1].get("role")
        return role if isinstance(role, str) else None
    return None


Reply = JSON | StreamPlan
Handler = Callable[[Ctx], Reply]
