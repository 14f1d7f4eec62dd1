"""How the read side treats stored values it cannot trust (rows written by old or foreign writers)."""

from __future__ import annotations

import json
from typing import Any

PLAUSIBLE = 2**53
"""A figure the read side believes is below this in size, the bound capture checks numbers against: a larger
token count, cost or duration (or inf, -inf, text), stored by an old or foreign writer, is left out of sums,
counts and histograms as unknown. It also keeps every sum finite: a billion rows add up to less than 1e25."""


def plausible(column: str) -> str:
    """``column`` when it holds a number below :data:`PLAUSIBLE` in size, else NULL. A comparison, not ``abs()``,
    which raises on the smallest 64-bit integer."""
    return f"CASE WHEN {column} > -{PLAUSIBLE} AND {column} < {PLAUSIBLE} THEN {column} END"


def stored_tags(text: Any) -> dict[str, Any]:
    """Stored tags as a dict; ``{}`` for none, and for anything but a JSON object (a foreign writer's)."""
    if not text:
        return {}
    try:
        tags = json.loads(text, parse_constant=lambda _: None)  # NaN/Infinity are not JSON
    except (TypeError, ValueError):
        return {}
    return tags if isinstance(tags, dict) else {}
