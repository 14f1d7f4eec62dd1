"""The generation parameters a request set, read from its body on the writer thread.

:func:`read_params` returns the parameters the OpenTelemetry GenAI conventions name (``max_tokens``,
``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop_sequences``, ``frequency_penalty``, ``presence_penalty``,
``choice_count``) and the requested ``output_type`` (``text``, ``json``, ``image``, ``speech``), whatever the wire
format spells them (OpenAI, Anthropic, Gemini ``generationConfig``, Ollama ``options``).

Prompts can be megabytes, so a large body is never decoded in full. A body of at most :data:`FULL_PARSE_BYTES` is
parsed; a larger one is scanned in its first and last :data:`SCAN_BYTES` only: from the start forwards and from
the end backwards, tracking JSON strings and nesting exactly, so that only *top-level* keys are taken (a
``"temperature"`` inside a message, a tool schema or a JSON string is never mistaken for the request's), and only
the values of the keys looked for are decoded. A parameter that lies outside both windows (between two large
values, e.g. after megabytes of messages *and* before megabytes of tools) is unknown: absent from the result,
never guessed.

Every value is validated: finite numbers in the ranges providers accept, integers where the conventions want
integers, at most :data:`MAX_STOP` stop sequences of at most :data:`MAX_STOP_CHARS` characters each. A value of the
wrong type or out of range is dropped, the rest stands.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["FULL_PARSE_BYTES", "MAX_STOP", "MAX_STOP_CHARS", "SCAN_BYTES", "read_params"]

FULL_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed with ``json.loads``; larger ones are scanned at both ends."""
SCAN_BYTES = 16 * 1024
"""How much of each end of a larger body is scanned for top-level keys."""
MAX_STOP = 32
"""Most stop sequences kept (more: the parameter is dropped)."""
MAX_STOP_CHARS = 256
"""Longest stop sequence kept (longer: the parameter is dropped)."""

_MAX_TOKENS = 1 << 24
_MAX_SEED = 1 << 63  # OpenTelemetry int attributes are signed 64-bit
_MAX_CHOICES = 128
_MAX_TOP_K = 1 << 20

# Top-level keys whose values are read. Nested objects (Gemini's generationConfig, Ollama's options, OpenAI's
# response_format and Responses API text.format) are read whole: they are small.
_TOP_KEYS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop",
        "stop_sequences",
        "frequency_penalty",
        "presence_penalty",
        "n",
        "response_format",
        "modalities",
        "text",
        "output_format",
        "output_config",
        "format",
        "options",
        "generationConfig",
        "generation_config",
    }
)

# Forward: a JSON string. Backward (on the reversed text): a reversed JSON string, whose escaped quotes are
# followed by an odd run of backslashes. Possessive quantifiers: a string cut by the window's edge fails fast.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_RSTRING = re.compile(r'"(?:[^"]++|"(?=(?:\\\\)*+\\(?!\\)))*+"')
_SKIP = re.compile(r'[^"{}\[\]]*+')
# Inside a nested value no key matters: skip whole strings and text up to the next bracket in one C call.
_DEEP_SKIP = re.compile(rf'(?:[^"{{}}\[\]]++|{_STRING.pattern})*+', re.DOTALL)
_DEEP_RSKIP = re.compile(rf'(?:[^"{{}}\[\]]++|{_RSTRING.pattern})*+')
_SPACE = re.compile(r"\s*+")
_DECODER = json.JSONDecoder()


def read_params(body: bytes | None) -> dict[str, Any] | None:
    """The validated generation parameters of a JSON request body, ``None`` when it sets none (or is not JSON)."""
    if not body or not isinstance(body, bytes | bytearray):
        return None
    start = body[:64].lstrip()
    if start[:1] != b"{":
        return None
    top = _full(body) if len(body) <= FULL_PARSE_BYTES else _scan(body)
    if not top:
        return None
    params = _validate(top)
    return params or None


def _full(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in _TOP_KEYS if key in data}


def _scan(body: bytes) -> dict[str, Any]:
    """Top-level keys found in the first and last :data:`SCAN_BYTES` (the head's value wins a duplicate)."""
    found = _scan_tail(body[-SCAN_BYTES:].decode("utf-8", "replace"))
    found.update(_scan_head(body[:SCAN_BYTES].decode("utf-8", "replace")))
    return found


def _value(text: str, colon: int) -> tuple[Any, int] | None:
    """The JSON value after the ``:`` at ``colon``, and where it ends; ``None`` when it runs past the window."""
    pos = _SPACE.match(text, colon + 1).end()  # type: ignore[union-attr]
    try:
        return _DECODER.raw_decode(text, pos)
    except ValueError:
        return None


def _scan_head(text: str) -> dict[str, Any]:
    """Forwards from the body's start: depth is exact until a string cut by the window's end."""
    found: dict[str, Any] = {}
    depth, pos, size = 0, 0, len(text)
    while True:
        pos = (_SKIP if depth < 2 else _DEEP_SKIP).match(text, pos).end()  # type: ignore[union-attr]
        if pos >= size:
            return found
        char = text[pos]
        if char == '"' and depth >= 2:
            return found  # the deep skip stops at a quote only when its string is cut by the window's edge
        if char in "{[":
            depth += 1
            pos += 1
        elif char in "}]":
            depth -= 1
            if depth <= 0:
                return found
            pos += 1
        else:
            match = _STRING.match(text, pos)
            if match is None:
                return found  # cut by the window's edge
            pos = match.end()
            if depth != 1:
                continue
            after = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            if after >= size or text[after] != ":":
                continue
            key = match.group()[1:-1]
            if key not in _TOP_KEYS:
                continue
            decoded = _value(text, after)
            if decoded is None:
                return found
            found.setdefault(key, decoded[0])
            pos = decoded[1]


def _scan_tail(text: str) -> dict[str, Any]:
    """Backwards from the body's end, on the reversed text: depth is exact until a string cut by the window's
    start. A key is a string at depth 1 followed (in the body) by ``:``; its value, later in the body, was already
    walked over, so it lies whole inside the window."""
    found: dict[str, Any] = {}
    rev = text[::-1]
    depth, pos, size = 0, 0, len(rev)
    while True:
        pos = (_SKIP if depth < 2 else _DEEP_RSKIP).match(rev, pos).end()  # type: ignore[union-attr]
        if pos >= size:
            return found
        char = rev[pos]
        if char == '"' and depth >= 2:
            return found  # as in _scan_head: a string cut by the window's edge
        if char in "}]":
            depth += 1
            pos += 1
        elif char in "{[":
            depth -= 1
            if depth <= 0:
                return found
            pos += 1
        else:
            match = _RSTRING.match(rev, pos)
            if match is None:
                return found  # cut by the window's edge
            start, pos = match.start(), match.end()
            if depth != 1:
                continue
            # In the body the key ends at size - start - 1; what follows it must be ':'.
            colon = _SPACE.match(text, size - start).end()  # type: ignore[union-attr]
            if colon >= size or text[colon] != ":":
                continue
            key = match.group()[-2:0:-1]
            if key not in _TOP_KEYS or key in found:
                continue
            decoded = _value(text, colon)
            if decoded is not None:
                found[key] = decoded[0]


# ---- validation ------------------------------------------------------------------------------------------------


def _integer(value: Any, low: int, high: int) -> int | None:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and low <= value <= high:
        return value
    return None


def _number(value: Any, low: float, high: float) -> float | None:
    if type(value) is int:
        value = float(value)
    if type(value) is float and math.isfinite(value) and low <= value <= high:
        return value
    return None


def _stops(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not 0 < len(value) <= MAX_STOP:
        return None
    if not all(isinstance(item, str) and 0 < len(item) <= MAX_STOP_CHARS for item in value):
        return None
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "max_tokens": lambda v: _integer(v, 1, _MAX_TOKENS),
    "temperature": lambda v: _number(v, 0.0, 10.0),
    "top_p": lambda v: _number(v, 0.0, 1.0),
    "top_k": lambda v: _number(v, 0.0, _MAX_TOP_K),  # a double in the conventions
    "seed": lambda v: _integer(v, -_MAX_SEED, _MAX_SEED - 1),
    "stop_sequences": _stops,
    "frequency_penalty": lambda v: _number(v, -10.0, 10.0),
    "presence_penalty": lambda v: _number(v, -10.0, 10.0),
    "choice_count": lambda v: _integer(v, 1, _MAX_CHOICES),
}

# Where each family spells each parameter, in order of preference (the first valid one wins).
_TOP_NAMES = {
    "max_tokens": ("max_completion_tokens", "max_output_tokens", "max_tokens"),
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
    "seed": ("seed",),
    "stop_sequences": ("stop_sequences", "stop"),
    "frequency_penalty": ("frequency_penalty",),
    "presence_penalty": ("presence_penalty",),
    "choice_count": ("n",),
}
_GEMINI_NAMES = {
    "max_tokens": ("maxOutputTokens", "max_output_tokens"),
    "temperature": ("temperature",),
    "top_p": ("topP", "top_p"),
    "top_k": ("topK", "top_k"),
    "seed": ("seed",),
    "stop_sequences": ("stopSequences", "stop_sequences"),
    "frequency_penalty": ("frequencyPenalty", "frequency_penalty"),
    "presence_penalty": ("presencePenalty", "presence_penalty"),
    "choice_count": ("candidateCount", "candidate_count"),
}
_OLLAMA_NAMES = {
    "max_tokens": ("num_predict",),  # -1 (no limit) and -2 (fill the context) are not limits: dropped
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
    "seed": ("seed",),
    "stop_sequences": ("stop",),
    "frequency_penalty": ("frequency_penalty",),
    "presence_penalty": ("presence_penalty",),
}


def _pick(params: dict[str, Any], source: Any, names: dict[str, tuple[str, ...]]) -> None:
    if not isinstance(source, dict):
        return
    for param, keys in names.items():
        if param in params:
            continue
        check = _CHECKS[param]
        for key in keys:
            if key in source:
                value = check(source[key])
                if value is not None:
                    params[param] = value
                    break


def _validate(top: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    gemini = top.get("generationConfig", top.get("generation_config"))
    _pick(params, gemini, _GEMINI_NAMES)
    _pick(params, top.get("options"), _OLLAMA_NAMES)
    _pick(params, top, _TOP_NAMES)
    output = _output_type(top, gemini if isinstance(gemini, dict) else {})
    if output is not None:
        params["output_type"] = output
    return params


_FORMAT_TYPES = {"text": "text", "json_object": "json", "json_schema": "json", "json": "json"}
_MODALITIES = {"image": "image", "audio": "speech"}


def _output_type(top: dict[str, Any], gemini: dict[str, Any]) -> str | None:
    """``gen_ai.output.type``: what the request asked the output to be, ``None`` when it did not say."""
    modalities = gemini.get("responseModalities", gemini.get("response_modalities"))
    if not isinstance(modalities, list):
        modalities = top.get("modalities")  # OpenAI chat: ["text", "audio"]
    if isinstance(modalities, list):
        for modality in modalities:
            if isinstance(modality, str) and modality.lower() in _MODALITIES:
                return _MODALITIES[modality.lower()]
    mime = gemini.get("responseMimeType", gemini.get("response_mime_type"))
    if isinstance(mime, str):
        if mime.endswith("json"):
            return "json"
        if mime.startswith("text/"):
            return "text"
    if any(key in gemini for key in ("responseSchema", "responseJsonSchema", "response_schema")):
        return "json"
    fmt = top.get("response_format")
    for holder in ("text", "output_config"):  # the Responses API's text.format, Anthropic's output_config.format
        nested = top.get(holder)
        if fmt is None and isinstance(nested, dict):
            fmt = nested.get("format")
    fmt = fmt if fmt is not None else top.get("output_format")  # Anthropic's structured outputs beta
    if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
        return _FORMAT_TYPES.get(fmt["type"])
    ollama = top.get("format")  # Ollama: "json" or a JSON schema
    if ollama == "json" or isinstance(ollama, dict):
        return "json"
    return None
