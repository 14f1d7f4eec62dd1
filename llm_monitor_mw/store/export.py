"""Exporting calls as CSV or JSON Lines, streamed row by row from one read-only snapshot.

The source is a SQLite file or a PostgreSQL URL. Rows come oldest first through :meth:`Engine.iterate` (one
statement on a connection of its own: a SQLite read snapshot, a PostgreSQL server-side cursor; never all in
memory), in the same shape as the dashboard's export:
``started_at`` as ISO-8601 UTC, ``tags`` as JSON (an object in JSON Lines), ``ok``/``streamed`` as booleans.
Prompt and response text (``request_content``/``response_content``) is left out unless asked for. Cells are
made by :mod:`.cells`, as the dashboard's are: CSV is spreadsheet-safe (RFC 4180 quoting, formulas neutralised with
a leading ``'``), JSON never holds ``Infinity``/``NaN``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any, Literal, TextIO

from .cells import csv_row, csv_writer, dumps, json_row
from .dbfile import iso, open_existing, open_store
from .engine.base import Engine
from .read.calls import API_COLUMNS, DETAIL_COLUMNS
from .read.filters import Filters
from .schema import CALLS

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
ALL = Filters()
"""No filter: every call."""


def columns(engine: Engine, *, content: bool = False) -> list[str]:
    """The exported columns, in order (those missing from an older database, e.g. before schema 2, left out).

    A SQLite file is read through a read-only connection of its own: an export never migrates it."""
    if engine.name == "sqlite":
        conn = open_existing(engine.location)
        try:
            present = {r[1] for r in conn.execute(f"PRAGMA table_info({CALLS})")}
        finally:
            conn.close()
    else:
        present = {
            r[0]
            for r in engine.connection().execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = ?",
                [CALLS],
            )
        }
    return [c for c in (DETAIL_COLUMNS if content else API_COLUMNS) if c in present]


def iter_calls(engine: Engine, names: list[str], filters: Filters = ALL) -> Iterator[dict[str, Any]]:
    """Every call matching ``filters``, oldest first, as dicts of the stored values of columns ``names``."""
    where, params = filters.where(engine.dialect)
    quoted = ", ".join(f'"{c}"' for c in names)
    for values in engine.iterate(f"SELECT {quoted} FROM {CALLS}{where} ORDER BY started_at, id", params, size=500):
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
    target: str | os.PathLike[str],
    out: TextIO,
    format: Format = "csv",
    filters: Filters = ALL,
    *,
    content: bool = False,
) -> int:
    """Write the calls matching ``filters`` to ``out`` as ``csv`` or ``jsonl``; returns how many were written.

    ``target`` is a SQLite file or a PostgreSQL URL. Open ``out`` with ``newline=""``: CSV records end in
    ``\\r\\n`` and fields may hold either character.

    Raises :class:`~llm_monitor_mw.store.dbfile.DatabaseFileError` when ``target`` is not a usable database.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    engine = open_store(target)
    try:
        return export_engine(engine, out, format, filters, content=content)
    finally:
        engine.close()


def export_engine(
    engine: Engine, out: TextIO, format: Format = "csv", filters: Filters = ALL, *, content: bool = False
) -> int:
    """:func:`export` from an open engine."""
    names = columns(engine, content=content)
    count = 0
    if format == "jsonl":
        for row in iter_calls(engine, names, filters):
            out.write(dumps(json_row(_shaped(row))) + "\n")
            count += 1
        return count
    writer = csv_writer(out)
    writer.writerow(names)
    for row in iter_calls(engine, names, filters):
        writer.writerow(csv_row(_shaped(row), names))
        count += 1
    return count
