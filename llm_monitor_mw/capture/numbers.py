"""Validation of the numbers a provider sends, where they enter the record.

A token count or rate-limit figure is stored only if it is a finite, non-negative integer below ``2**53`` (the
range every engine, JSON reader and sum handles exactly); a wait time only if it is finite, non-negative and at
most a year. Anything else is stored as NULL with a note on the record's ``error``
(``usage.prompt_tokens=1e+30 out of range; stored as NULL``), so that one hostile or buggy response can neither
fail a write batch nor overflow a later ``sum()``.
"""

from __future__ import annotations

import math
from typing import Any

COUNT_LIMIT = 2**53
"""Counts must be below this (exclusive)."""
MAX_WAIT_S = 365 * 24 * 3600.0
"""The longest ``retry-after`` believed (one year)."""
MAX_NOTES = 8
"""Number notes kept per record (a stream repeating one bad value reports it once)."""
_SHOWN = 40  # characters of a bad value quoted in its note


def _shown(value: Any) -> str:
    """A short, safe rendering of a rejected value for its note."""
    if isinstance(value, dict | list):
        return f"<{type(value).__name__}>"
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (beyond sys.get_int_max_str_digits)
        text = "<huge int>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def note(notes: list[str], text: str) -> None:
    """Append ``text`` to ``notes`` once, keeping at most :data:`MAX_NOTES`."""
    if text not in notes and len(notes) < MAX_NOTES:
        notes.append(text)


def reject(notes: list[str], name: str, value: Any) -> None:
    """Note that ``name`` held ``value``, which is not stored."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        why = f"is {type(value).__name__}, not a number"
    elif number is None:
        why = "is not a number"
    elif isinstance(number, float) and math.isfinite(number) and not number.is_integer() and 0 <= number < COUNT_LIMIT:
        why = "is not an integer"
    else:
        why = "out of range"
    note(notes, f"{name}={_shown(value)} {why}; stored as NULL")


def count(value: Any, name: str, notes: list[str]) -> int | None:
    """A count from a decoded JSON value: ``None`` when absent; ``None`` plus a note when it is not a valid count.

    Valid: an ``int`` (not ``bool``) or an integral ``float`` in ``[0, 2**53)``. Strings are the wrong type in JSON.
    """
    if value is None:
        return None
    if type(value) is int:
        if 0 <= value < COUNT_LIMIT:
            return value
    elif type(value) is float and value.is_integer() and 0 <= value < COUNT_LIMIT:  # nan/inf are not integral
        return int(value)
    reject(notes, name, value)
    return None


def header_count(text: str | None, name: str, notes: list[str]) -> int | None:
    """A count from a header value (``"12"``; ``"12.0"`` accepted), with the same range rules as :func:`count`."""
    if text is None:
        return None
    stripped = text.strip()
    if not stripped.isascii():  # "²" is a digit to str.isdigit, "١٢" a number to float()
        stripped = "?"
    if stripped.isdigit() and len(stripped) <= 16:
        value = int(stripped)
        if value < COUNT_LIMIT:
            return value
    else:
        try:
            number = float(stripped)
        except ValueError:
            number = math.nan
        if number.is_integer() and 0 <= number < COUNT_LIMIT:
            return int(number)
    reject(notes, name, text)
    return None


def header_seconds(text: str | None, scale: float, name: str, notes: list[str]) -> float | None:
    """A wait in seconds from a numeric header value times ``scale``; finite, non-negative, at most a year."""
    if text is None:
        return None
    try:
        seconds = float(text.strip()) * scale if text.isascii() else math.nan
    except ValueError:
        seconds = math.nan
    if 0.0 <= seconds <= MAX_WAIT_S:  # false for nan
        return seconds
    reject(notes, name, text)
    return None


def checked_sum(notes: list[str], name: str, *values: int | None) -> int | None:
    """The sum of the known ``values`` (``None`` if none is known), ``None`` plus a note if it reaches ``2**53``."""
    total: int | None = None
    for value in values:
        if value is not None:
            total = value if total is None else total + value
    if total is not None and total >= COUNT_LIMIT:
        note(notes, f"{name}={total} (a sum) out of range; stored as NULL")
        return None
    return total


def finite(value: float | None) -> float | None:
    """``value`` if it is a finite float, else ``None``."""
    return value if value is not None and math.isfinite(value) else None
