"""Exporting calls as CSV or JSON Lines, streamed row by row from one read-only snapshot.

Rows come oldest first through a cursor (never all in memory), in the same shape as the dashboard's export:
``started_at`` as ISO-8601 UTC, ``tags`` as JSON (an object in JSON Lines), ``ok``/``streamed`` as booleans.
Prompt and response text (``request_content``/``response_content``) is left out unless asked for. Cells are
made by :mod:`.cells`, as the dashboard's are: CSV is spreadsheet-safe (RFC 4180 quoting, formulas neutralised with
a leading ``'``), JSON never holds ``Infinity``/``NaN``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any, Literal, TextIO

from .cells import csv_row, csv_writer, dumps, json_row
from .dbfile import iso, open_existing
from .queries import API_COLUMNS, DETAIL_COLUMNS, Filters
from .schema import CALLS

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
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
    try:
        row["started_at"] = iso(row["started_at"])
    except (ValueError, OverflowError, OSError, TypeError):  # a stored time no date can show (e.g. infinity)
        row["started_at"] = None
    if "tags" in row:
        with contextlib.suppress(ValueError):  # not written by this package: export the text as stored
            row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
    for flag in ("ok", "streamed"):
        if flag in row and row[flag] is not None:
            row[flag] = bool(row[flag])
    return row


def export(
    db_path: str | os.PathLike[str],
    out: TextIO,
    format: Format = "csv",
    filters: Filters = ALL,
    *,
    content: bool = False,
) -> int:
    """Write the calls matching ``filters`` to ``out`` as ``csv`` or ``jsonl``; returns how many were written.

    Open ``out`` with ``newline=""``: CSV records end in ``\\r\\n`` and fields may hold either character.

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
                out.write(dumps(json_row(_shaped(row))) + "\n")
                count += 1
            return count
        writer = csv_writer(out)
        writer.writerow(names)
        for row in iter_calls(conn, names, filters):
            writer.writerow(csv_row(_shaped(row), names))
            count += 1
        return count
    finally:
        conn.close()
