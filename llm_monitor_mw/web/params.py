"""Query-parameter parsing with errors that name the parameter (turned into 400 responses).

Every value from a query string or a path is bounded here, before it reaches SQL, ``datetime`` or a template:
times to what ``datetime`` can show (1970 to 9999), integers to their range (ids fit a SQLite INTEGER), text to
a length and without control characters (NUL, surrogates) that SQLite or an encoder may refuse.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..store.read.filters import parse_tag as split_tag
from ..timespec import is_duration, parse_duration

_INTEGER = re.compile(r"-?[0-9]{1,30}", re.ASCII)
_TIME_CHARS = 64
"""Longest time value accepted (an ISO-8601 time with microseconds and an offset is 32)."""

MIN_TIME = 0.0
"""Earliest time accepted: 1970-01-01T00:00:00Z."""
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""Latest time accepted: the end of year 9999, the last one ``datetime`` can show."""
MAX_ID = 2**63 - 1
"""Largest row id (SQLite's INTEGER)."""
MAX_TEXT = 200
"""Default longest text parameter (provider, model, route, user, q, a tag's value)."""


class ParamError(ValueError):
    """A bad query parameter; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def _bounded_time(name: str, ts: float) -> float:
    if not math.isfinite(ts):
        raise ParamError(name, "must be a finite number")
    if not MIN_TIME <= ts <= MAX_TIME:
        raise ParamError(name, "must be between 1970-01-01 and 9999-12-31")
    return ts


def parse_time(name: str, value: str | None, *, now: float | None = None) -> float | None:
    """Unix seconds from ISO-8601 (naive = UTC), a Unix timestamp, or a span back from now (``15m``, ``7d``).

    The result lies between 1970-01-01 and 9999-12-31 (UTC); anything else is a :class:`ParamError`.
    """
    if value is None or value == "":
        return None
    value = value.strip()
    if len(value) > _TIME_CHARS:
        raise ParamError(name, f"must be at most {_TIME_CHARS} characters")
    if is_duration(value):
        return _bounded_time(name, (time.time() if now is None else now) - parse_duration(value))
    if value.isascii() and "_" not in value:  # float() also reads other scripts' digits and "1_0"
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return _bounded_time(name, number)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except (ValueError, OverflowError):
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            try:
                ts = moment.timestamp()
            except (ValueError, OverflowError, OSError):  # e.g. year 1 with a positive offset
                raise ParamError(name, "must be between 1970-01-01 and 9999-12-31") from None
            return _bounded_time(name, ts)
    raise ParamError(
        name, f"{value[:40]!r} is not a time: use ISO-8601 (2026-01-31T12:00:00Z), Unix seconds, or a span like 24h"
    )


def parse_int(name: str, value: str | None, *, default: int, minimum: int, maximum: int) -> int:
    """An integer (ASCII digits, optional ``-``) in ``[minimum, maximum]``, or ``default`` when absent."""
    if value is None or value == "":
        return default
    if not _INTEGER.fullmatch(value):
        raise ParamError(name, f"{value[:40]!r} is not an integer")
    number = int(value)
    if not minimum <= number <= maximum:
        raise ParamError(name, f"must be between {minimum} and {maximum}")
    return number


def parse_id(name: str, value: str) -> int:
    """A row id from a path: ASCII digits, 1 to 2**63-1 (what SQLite can compare with a row id)."""
    if not value.isascii() or not value.isdigit() or len(value) > 19 or not 1 <= int(value) <= MAX_ID:
        raise ParamError(name, f"{value[:40]!r} is not a request id")
    return int(value)


def parse_choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    """One of ``choices`` or ``None`` when absent."""
    if value is None or value == "":
        return None
    if value not in choices:
        raise ParamError(name, f"must be one of {', '.join(choices)}")
    return value


def check_text(name: str, value: str, *, max_length: int = MAX_TEXT) -> str:
    """``value`` if it is at most ``max_length`` characters without control characters or lone surrogates."""
    if len(value) > max_length:
        raise ParamError(name, f"must be at most {max_length} characters")
    if not value.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ParamError(name, "must not contain control characters")
    return value


def parse_text(name: str, value: str | None, *, max_length: int = MAX_TEXT, strip: bool = False) -> str | None:
    """A free-text filter (checked by :func:`check_text`), or ``None`` when absent or empty."""
    if value is None:
        return None
    if strip:
        value = value.strip()
    return check_text(name, value, max_length=max_length) or None


def parse_tag(value: str | None) -> tuple[str, str] | None:
    """``tag=key:value`` as ``(key, value)`` (both stripped; the key non-empty), or ``None`` when absent."""
    if value is None or value == "":
        return None
    try:
        key, tag_value = split_tag(value)
    except ValueError as exc:
        raise ParamError("tag", str(exc)) from None
    check_text("tag", key, max_length=100)
    check_text("tag", tag_value)
    return key, tag_value


_FINGERPRINT = re.compile(r"[0-9a-f]{16}", re.ASCII)


def parse_fingerprint(name: str, value: str | None) -> str | None:
    """An API key's fingerprint (``key=``: 16 hex digits, any case, as a request's page shows it), or ``None``."""
    if value is None or value == "":
        return None
    text = value.strip().lower()
    if not _FINGERPRINT.fullmatch(text):
        raise ParamError(name, "must be a key fingerprint: 16 hex digits")
    return text


def parse_dimensions(query: Mapping[str, str]) -> dict[str, Any]:
    """The filters the pages and the API read alike, as :class:`~llm_monitor_mw.store.read.filters.Filters`
    fields: ``provider``, ``model``, ``status`` (as ``ok``), ``route``, ``user``, ``instance``, ``tag``, ``tool`` and
    ``key`` (an API key's fingerprint)."""
    status = parse_choice("status", query.get("status"), ("ok", "error"))
    return {
        "provider": parse_text("provider", query.get("provider")),
        "model": parse_text("model", query.get("model")),
        "ok": None if status is None else status == "ok",
        "route": parse_text("route", query.get("route")),
        "user": parse_text("user", query.get("user")),
        "instance": parse_text("instance", query.get("instance")),
        "tag": parse_tag(query.get("tag")),
        "tool": parse_text("tool", query.get("tool")),
        "key": parse_fingerprint("key", query.get("key")),
    }
