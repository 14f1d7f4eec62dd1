"""Cells of an export, shared by the CLI (``store.export``) and the dashboard (``requests.csv`` / ``requests.json``).

Stored text is hostile input: a provider's error message, a tag or a model name can be anything. Two promises:

* **CSV is spreadsheet-safe.** Fields are quoted as RFC 4180 needs (a ``\\r`` or ``\\n`` inside a field is always
  quoted, so one call is one record), and a text cell that a spreadsheet would run as a formula gets a leading
  ``'``: one starting with ``= + - @ |`` or their full-width forms U+FF1D, U+FF0B, U+FF0D, U+FF20 (also behind
  leading whitespace, NBSP, other Unicode spaces or zero-width characters), or starting with a tab, CR or LF.
* **JSON is JSON.** Non-finite floats (``inf``, ``nan``, which a stored row may hold) become ``null``, so
  ``json.dumps(..., allow_nan=False)`` never fails and never writes ``Infinity``. JSON text is not neutralised:
  it is read by programs, which get the stored value exactly.

In both, a non-finite number is written as unknown (an empty CSV cell, a JSON ``null``), as NULL is, and a float
with all its digits and never in scientific notation (a cost of ``3.6e-06`` dollars is written ``0.0000036``).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, TextIO

_FORMULA = re.compile(
    r"[\t\r\n]"  # a leading control character on its own (OWASP)
    r"|[\s\u200b-\u200d\u2060\ufeff]*"  # any Unicode space (NBSP, U+2000..U+200A, U+3000, ...) and zero-widths
    r"[=+\-@|\uff1d\uff0b\uff0d\uff20\ufe62\ufe63\ufe66\u2212]"  # ASCII, full-width, small and minus-sign forms
)


def neutralize(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would take it for a formula, else unchanged."""
    return "'" + text if _FORMULA.match(text) else text


def plain(value: float) -> str:
    """A finite float positionally with the shortest digits that read back as it: ``3.6e-06`` → ``0.0000036``."""
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (also inside lists and dicts) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(value: Any) -> str:
    """Compact JSON of ``value`` on one line (non-finite floats as ``null``), UTF-8 text kept as is.

    The characters ``str.splitlines()`` also breaks at (U+0085, U+2028, U+2029) are escaped, so a JSON Lines
    reader splitting lines that way still gets one call per line.
    """
    text = _encode(finite(value))
    return text.translate(_LINE_BREAKS) if not text.isascii() else text


def _encode(value: Any) -> str:
    """Compact JSON as :func:`json.dumps` writes it, but floats positionally (:func:`plain`)."""
    if isinstance(value, float):
        return plain(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def csv_cell(value: Any) -> Any:
    """One CSV cell: text neutralised, dicts and lists as JSON (empty ones as an empty cell), non-finite as empty."""
    if isinstance(value, str):
        return neutralize(value)
    if isinstance(value, dict | list):
        return neutralize(dumps(value)) if value else ""
    if isinstance(value, float):
        return plain(value) if math.isfinite(value) else None
    return value


def csv_row(row: Mapping[str, Any], names: Iterable[str]) -> list[Any]:
    """The cells of ``row`` for columns ``names``, in order."""
    return [csv_cell(row[name]) for name in names]


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` ready for ``json.dumps(..., allow_nan=False)``."""
    return {key: finite(value) for key, value in row.items()}


def csv_writer(out: TextIO) -> Any:
    """A CSV writer for ``out`` (open it with ``newline=""``): RFC 4180 quoting and ``\\r\\n`` between records.

    ``\\r`` and ``\\n`` being the line terminator is what makes :data:`csv.QUOTE_MINIMAL` quote them inside fields
    (with ``lineterminator="\\n"`` a bare ``\\r`` goes out unquoted and splits the record).
    """
    return csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
