"""Exporting calls as CSV or JSON Lines, streamed row by row from one read-only snapshot.

Rows come oldest first through a cursor (never all in memory), in the same shape as the dashboard's export:
``started_at`` as ISO-8601 UTC, ``tags`` as JSON (an object in JSON Lines), ``ok``/``streamed`` as booleans.
Prompt and response text (``request_content``/``response_content``) is left out unless asked for. CSV cells
starting with ``= + - @`` (or a tab or CR) get a leading ``'`` so spreadsheets do not run them as formulas.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any, Literal, TextIO

from .dbfile import iso, open_existing
from .queries import API_COLUMNS, DETAIL_COLUMNS, Filters
from .schema import CALLS

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ALL = Filters()
"""No filter: every call."""


def columns(conn: sqlite3.Connection, *, content: bool = False) -> list[str]:
    """The exported columns, in order (those missing from an older database, e.g. before schema 2, left out)."""
    present = {r[1] for r in conn.execute(f"PRAGMA table_info({CALLS})")}
    return [c for c in (DETAIL_COLUMNS if content else API_COLUMNS) if c in present]


def iter_calls(conn: sqlite3.Connection, names: list[str], filters: Filters = ALL) -> Iterator[dict[str, Any]]:
    """Every call matching ``filters``, oldest first, as dicts of the stored values of columns ``names``."""
    where, params = filters.where()
    quoted = ", ".join(f'"{c}"' for c in names)
    cursor = conn.execute(f"SELECT {quoted} FROM {CALLS}{where} ORDER BY started_at, id", params)
    while batch := cursor.fetchmany(500):
        for values in batch:
            yield dict(zip(names, values, strict=True))


def _shaped(row: dict[str, Any]) -> dict[str, Any]:
    row["started_at"] = iso(row["started_at"])
    if "tags" in row:
        row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
    for flag in ("ok", "streamed"):
        if flag in row and row[flag] is not None:
            row[flag] = bool(row[flag])
    return row


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export(
    db_path: str | os.PathLike[str],
    out: TextIO,
    format: Format = "csv",
    filters: Filters = ALL,
    *,
    content: bool = False,
) -> int:
    """Write the calls matching ``filters`` to ``out`` as ``csv`` or ``jsonl``; returns how many were written.

    Raises :class:`~llm_monitor_mw.store.dbfile.DatabaseFileError` when ``db_path`` is not a usable database.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    conn = open_existing(db_path)
    try:
        names = columns(conn, content=content)
        count = 0
        if format == "jsonl":
            for row in iter_calls(conn, names, filters):
                out.write(json.dumps(_shaped(row), ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
            return count
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in iter_calls(conn, names, filters):
            shaped = _shaped(row)
            if "tags" in shaped:
                shaped["tags"] = json.dumps(shaped["tags"], separators=(",", ":")) if shaped["tags"] else ""
            writer.writerow([_csv_cell(shaped[c]) for c in names])
            count += 1
        return count
    finally:
        conn.close()
