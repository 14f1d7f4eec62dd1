"""The requests page: the filtered, sorted, paged list of calls, and its CSV/JSON export (the same rows, streamed)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...store import cells
from ...store.dbfile import iso
from ...store.read import API_COLUMNS
from ..params import ParamError
from .base import Dashboard, Data, Handler
from .view import parse_view

EXPORT_CAP = 100_000
"""Most rows one CSV/JSON export returns."""


def table_region(data: Data) -> dict[str, Any]:
    view = data.view
    rows = data.analytics.page(
        view.filters, sort=view.sort, descending=view.descending, limit=view.limit, offset=view.offset
    )
    total = data.analytics.count(view.filters)
    return {
        "rows": rows,
        "total": total,
        "live": view.offset == 0 and view.sort == "time" and view.descending,
        "export_cap": EXPORT_CAP,
    }


def export(dash: Dashboard, request: Request, fmt: str) -> Response:
    """``requests.csv`` / ``requests.json``: exactly the filtered rows (at most :data:`EXPORT_CAP`), streamed."""
    try:
        view = parse_view(request)
    except ParamError as exc:
        return dash.bad_request(request, exc)
    rows = dash.analytics.export(view.filters, sort=view.sort, descending=view.descending, cap=EXPORT_CAP)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    headers = {
        "Content-Disposition": f'attachment; filename="llm-requests-{stamp}.{fmt}"',
        "X-Export-Cap": str(EXPORT_CAP),
        "Cache-Control": "no-store",
    }
    if fmt == "csv":
        return StreamingResponse(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(_json(rows), media_type="application/json", headers=headers)


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "started_at": iso(row["started_at"])}


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """``requests.csv``: the same cells as ``llm-monitor export`` (see :mod:`..store.cells`), 500 rows a chunk."""
    buffer = io.StringIO(newline="")
    writer = cells.csv_writer(buffer)
    writer.writerow(API_COLUMNS)
    for i, row in enumerate(rows, 1):
        writer.writerow(cells.csv_row(_export_row(row), API_COLUMNS))
        if i % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """``requests.json``: one array, never ``Infinity``/``NaN`` (see :mod:`..store.cells`), 500 rows a chunk."""
    yield "["
    chunk: list[str] = []
    for i, row in enumerate(rows):
        chunk.append(("," if i else "") + "\n" + cells.dumps(cells.json_row(_export_row(row))))
        if len(chunk) >= 500:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "\n]\n"


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/requests``, its table's fragment, and the two exports."""

    def as_csv(request: Request) -> Response:
        return export(dash, request, "csv")

    def as_json(request: Request) -> Response:
        return export(dash, request, "json")

    return {
        **dash.handlers("requests", "/requests", {"table": table_region}),
        "/requests.csv": as_csv,
        "/requests.json": as_json,
    }
