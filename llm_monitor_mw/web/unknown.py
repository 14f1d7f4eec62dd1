"""Why a call's tokens or cost are unknown: the tooltip behind each ``—`` the pages show (NULL is never zero).

Both functions take a call row as the pages read it (``status_code``, ``ok``, ``streamed``, ``input_tokens``,
``output_tokens``, ``cost_usd``, ``model``/``response_model``/``request_model``; missing keys count as unknown)
and answer ``None`` when the value is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAILED_EARLY = "failed before a response"
NO_USAGE = "no usage reported"
STREAM_NO_USAGE = "no usage reported: the stream carried none (OpenAI: stream_options include_usage)"


def _model(row: Mapping[str, Any]) -> str | None:
    for key in ("model", "response_model", "request_model"):
        value = row.get(key)
        if value:
            return str(value)
    return None


def _failed(row: Mapping[str, Any]) -> str | None:
    """The reason for a failed call, which providers answer without usage."""
    status = row.get("status_code")
    if status is None:
        return FAILED_EARLY
    if not row.get("ok", True):
        return f"failed with HTTP {status}: {NO_USAGE}"
    return None


def tokens_reason(row: Mapping[str, Any], which: str = "input_tokens") -> str | None:
    """Why ``row[which]`` (``input_tokens``, ``output_tokens``, ``total_tokens``…) is unknown, or ``None``."""
    if row.get(which) is not None:
        return None
    failed = _failed(row)
    if failed is not None:
        return failed
    if row.get("input_tokens") is not None or row.get("output_tokens") is not None:
        return "not reported by the provider"
    return STREAM_NO_USAGE if row.get("streamed") else NO_USAGE


def cost_reason(row: Mapping[str, Any]) -> str | None:
    """Why ``row["cost_usd"]`` is unknown (``"no price for gpt-x"``, ``"no usage reported"``…), or ``None``."""
    if row.get("cost_usd") is not None:
        return None
    if row.get("input_tokens") is None and row.get("output_tokens") is None:
        return tokens_reason(row, "input_tokens")
    model = _model(row)
    return f"no price for {model}" if model else "no price: the model is unknown"
