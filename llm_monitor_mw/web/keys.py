"""API keys as the dashboard and the API show them: a name from ``Monitor(key_names=...)``, else the stored hint
and the fingerprint's first :data:`SHORT_DIGITS` hex digits (``sk-proj-…a1b2 · 3f2a9c1e``). The key itself is
never stored, so never shown."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SHORT_DIGITS = 8
"""Hex digits of a fingerprint shown beside its hint, and the shortest prefix ``key_names`` may name a key by."""
MAX_NAME = 100
_PREFIX = re.compile(r"[0-9a-f]{8,16}", re.ASCII)


def check_key_names(names: Mapping[str, str] | None) -> dict[str, str]:
    """``key_names`` validated: fingerprint prefixes of 8 to 16 hex digits (any case) to names of 1 to
    :data:`MAX_NAME` printable characters. Raises :class:`ValueError` (or :class:`TypeError`) naming the entry."""
    out: dict[str, str] = {}
    for prefix, name in (names or {}).items():
        if not isinstance(prefix, str) or not isinstance(name, str):
            raise TypeError(f"key_names maps fingerprint strings to name strings, not {prefix!r}: {name!r}")
        key = prefix.strip().lower()
        if not _PREFIX.fullmatch(key):
            raise ValueError(f"key_names: {prefix!r} is not a key fingerprint (8 to 16 hex digits)")
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise ValueError(f"key_names: the name of {prefix!r} must be 1 to {MAX_NAME} printable characters")
        out[key] = name
    return out


class KeyNames:
    """Looks up the name of a fingerprint (the longest ``key_names`` prefix it starts with)."""

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self.names = check_key_names(names)
        self._by_length = sorted(self.names.items(), key=lambda kv: -len(kv[0]))

    def name(self, fingerprint: str | None) -> str | None:
        """The configured name of the key with this fingerprint, ``None`` without one."""
        if not fingerprint:
            return None
        return next((name for prefix, name in self._by_length if fingerprint.startswith(prefix)), None)

    def label(self, fingerprint: str | None, hint: str | None) -> dict[str, Any]:
        """How a key is shown: ``name`` (configured, or ``None``), ``hint``, ``short`` (the fingerprint's first
        digits) and ``text`` (the name, else ``hint · short``)."""
        short = fingerprint[:SHORT_DIGITS] if fingerprint else None
        name = self.name(fingerprint)
        shown = " · ".join(p for p in (hint or "…", short) if p)
        return {"name": name, "hint": hint, "short": short, "text": name or shown}

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` of :meth:`~llm_monitor_mw.store.read.keys.Keys.by_key` with ``key_name`` and ``label``."""
        for row in rows:
            label = self.label(row.get("key_fingerprint"), row.get("key_hint"))
            row["key_name"] = label["name"]
            row["label"] = label["text"]
        return rows
