"""Hostile stored rows for the export tests (CLI and dashboard): formulas behind every prefix, line breaks, inf.

The checks here are written independently of ``llm_monitor_mw.store.cells`` so that they can catch it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

FORMULA_STARTS = "=+-@|\uff1d\uff0b\uff0d\uff20"
"""What a spreadsheet may take for the start of a formula (ASCII and full-width)."""

HOSTILE_TEXT: list[str] = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1:A2)",
    "|calc",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    " =1+1",
    "   +cmd",
    "\u00a0=1+1",  # NBSP
    "\u2003-1",  # em space
    "\u3000@x",  # ideographic space
    "\u202f=1",  # narrow NBSP
    "\u200b=1+1",  # zero-width space (not whitespace to str.isspace)
    "\ufeff=1+1",  # BOM
    "\uff1d1+1",  # full-width =
    "\uff0b1",
    "\uff0d1",
    "\uff20x",
    "ok\r=1+1",  # the CLI bug: a bare CR split the call into two records, the second starting with =1+1
    "ok\n=1+1",
    "ok\r\n=cmd|' /C calc'!A0",
    'a,b"c"\r',
    "line\u2028=1+1",
    "next\x85=1+1",
]
"""Text a provider or a user may have put in an error message, a model name, a tag."""

HARMLESS_TEXT = ["rate limited", "task-oriented", "1-2", "a=b", "gpt-4o-mini", "{json}"]
"""Text that must come out exactly as stored."""

ALL_TEXT = HOSTILE_TEXT + HARMLESS_TEXT

NON_FINITE = {"duration_ms": math.inf, "cost_usd": -math.inf, "ttft_ms": math.inf}
"""Stored into every hostile row behind the writer's back (an older version, another tool)."""


def records() -> list[dict[str, Any]]:
    """``CallRecord`` keyword arguments: one call per text, the text in several text columns."""
    return [{"error": text, "error_type": text, "user": text, "route": text, "tags": {"k": text}} for text in ALL_TEXT]


def store_non_finite(db: Path) -> None:
    """Put :data:`NON_FINITE` into every stored call (SQLite stores infinities as REAL)."""
    conn = sqlite3.connect(db)
    try:
        sets = ", ".join(f"{column} = ?" for column in NON_FINITE)
        conn.execute(f"UPDATE calls SET {sets}", list(NON_FINITE.values()))
        conn.commit()
        assert conn.execute("SELECT duration_ms FROM calls LIMIT 1").fetchone()[0] == math.inf
    finally:
        conn.close()


def is_formula(cell: str) -> bool:
    """Whether a spreadsheet could run ``cell``: a control character first, or a formula start behind spaces."""
    if cell[:1] in ("\t", "\r", "\n"):
        return True
    rest = cell.lstrip("".join(c for c in map(chr, range(0x3100)) if c.isspace()) + "\u200b\u200c\u200d\u2060\ufeff")
    return bool(rest) and rest[0] in FORMULA_STARTS


def unneutralized(cell: str) -> str:
    """The stored text behind a CSV cell (``'`` removed where a formula was neutralised)."""
    return cell[1:] if cell.startswith("'") and is_formula(cell[1:]) else cell


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses ``Infinity``/``NaN`` (which Python's parser accepts by default)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def check_csv_rows(rows: list[list[str]], header: list[str]) -> None:
    """One record per call, no formula anywhere, text round-trips, non-finite numbers as empty cells."""
    assert len(rows) == len(ALL_TEXT), [r[:3] for r in rows]
    for row in rows:
        assert len(row) == len(header)
        for cell in row:
            assert not is_formula(cell), (cell, row)
    by_error = {unneutralized(dict(zip(header, row, strict=True))["error"]): row for row in rows}
    assert sorted(by_error) == sorted(ALL_TEXT)
    for text, row in by_error.items():
        cells = dict(zip(header, row, strict=True))
        for column in ("error", "error_type", "user", "route"):
            assert unneutralized(cells[column]) == text, (column, cells[column], text)
            assert (cells[column] == text) == (not is_formula(text))
        assert json.loads(unneutralized(cells["tags"])) == {"k": text}
        for column in NON_FINITE:
            assert cells[column] == "", (column, cells[column])


def check_json_rows(items: list[dict[str, Any]]) -> None:
    """One item per call, text exactly as stored, non-finite numbers as ``null``."""
    assert sorted(item["error"] for item in items) == sorted(ALL_TEXT)
    for item in items:
        assert item["user"] == item["route"] == item["error_type"] == item["error"]
        assert item["tags"] == {"k": item["error"]}
        for column in NON_FINITE:
            assert item[column] is None, (column, item[column])
