"""Calls as rows: the requests page and its export, one call's attempts, the latest errors, the API's list/get."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ..engine.base import Dialect
from ..schema import CALL_COLUMNS, CALLS
from ..values import stored_tags
from .base import Reader, snapshotted
from .filters import Filters
from .plan import HOUR

API_COLUMNS: tuple[str, ...] = (
    "id",
    "started_at",
    "provider",
    "model",
    "request_model",
    "response_model",
    "operation",
    "endpoint",
    "host",
    "method",
    "call_id",
    "attempt",
    "status_code",
    "ok",
    "error_type",
    "error",
    "streamed",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cost_usd",
    "duration_ms",
    "ttft_ms",
    "ttlt_ms",
    "output_tokens_per_s",
    "finish_reason",
    "request_id",
    "ratelimit_remaining_requests",
    "ratelimit_remaining_tokens",
    "retry_after_s",
    "response_bytes",
    "tags",
    "route",
    "user",
    "inbound_method",
    "inbound_request_id",
    *(("instance",) if "instance" in CALL_COLUMNS else ()),
    "trace_id",
    "trace_name",
    "span_name",
    "tool_call_count",
    "tool_names",
    "service_tier",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "response_id",
)
"""The columns of a call in the API, the requests page and exports (all but the prompt and response text, and the
tool calls' arguments)."""
DETAIL_COLUMNS = (
    *API_COLUMNS,
    "request_content",
    "response_content",
    "tool_arguments",
    "key_fingerprint",
    "key_hint",
)
SORTABLE = {
    "time": "started_at",
    "provider": "provider",
    "model": "model",
    "status": "status_code",
    "duration": "duration_ms",
    "ttft": "ttft_ms",
    "input": "input_tokens",
    "output": "output_tokens",
    "tokens": "total_tokens",
    "cost": "cost_usd",
}
"""Sort keys the requests page accepts, mapped to their (whitelisted) columns."""
_TEXT = frozenset({"provider", "model"})
_ATTEMPT_COLUMNS = (
    "id",
    "started_at",
    "attempt",
    "status_code",
    "ok",
    "error_type",
    "duration_ms",
    "provider",
    "model",
)
_ERROR_COLUMNS = ("id", "started_at", "provider", "model", "status_code", "error_type", "error", "attempt", "route")


def select_list(columns: Sequence[str]) -> str:
    """Column names quoted (``user`` is a reserved word in PostgreSQL)."""
    return ", ".join(f'"{c}"' for c in columns)


def text_order(dialect: Dialect, expr: str) -> str:
    """``expr`` sorted by code point on both engines (SQLite's BINARY; PostgreSQL's database collation would not)."""
    return f'{expr} COLLATE "C"' if dialect.name == "postgresql" else expr


def order_by(dialect: Dialect, sort: str, descending: bool) -> str:
    """``ORDER BY`` terms for ``sort`` (a :data:`SORTABLE` key): NULLs last either way, ties newest first."""
    column = SORTABLE.get(sort)
    if column is None:
        raise ValueError(f"cannot sort by {sort!r}")
    direction = "DESC" if descending else "ASC"
    if column == "started_at":
        return f"started_at {direction}, id {direction}"
    key = text_order(dialect, column) if column in _TEXT else column
    return f"{key} {direction} NULLS LAST, started_at DESC, id DESC"


def stored_tool_names(text: Any, count: Any) -> list[str] | None:
    """Stored tool names as a list: ``[]`` when the call asked for no tool (``count`` 0; the writer stores an empty
    list as NULL), ``None`` when unknown (no count, or a value that is not a JSON array of strings)."""
    if not text:
        return [] if count == 0 and count.__class__ is int else None
    try:
        names = json.loads(text, parse_constant=lambda _: None)
    except (TypeError, ValueError):
        return None
    if not isinstance(names, list):
        return None
    return [n for n in names if isinstance(n, str)]


def row_dict(columns: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """A stored row as the dashboard shows it: a non-finite float (an old or foreign writer's) is unknown (JSON has
    no Infinity), tags a dict, ``ok``/``streamed`` booleans."""
    row = {c: None if v.__class__ is float and v - v != 0.0 else v for c, v in zip(columns, values, strict=True)}
    if "tags" in row:
        row["tags"] = stored_tags(row["tags"])
    if "tool_names" in row:
        row["tool_names"] = stored_tool_names(row["tool_names"], row.get("tool_call_count"))
    for flag in ("ok", "streamed"):
        if flag in row:
            row[flag] = bool(row[flag])
    return row


def api_row(columns: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """A stored row as the API answers it: the values as stored, tags a dict, ``ok``/``streamed`` booleans."""
    row = dict(zip(columns, values, strict=True))
    row["streamed"] = bool(row["streamed"])
    row["ok"] = bool(row["ok"])
    row["tags"] = stored_tags(row["tags"])
    if "tool_names" in row:
        row["tool_names"] = stored_tool_names(row["tool_names"], row.get("tool_call_count"))
    return row


class Calls(Reader):
    """The requests page's rows, exports, attempts and latest errors."""

    @snapshotted
    def has_calls(self) -> bool:
        """Whether anything was ever recorded."""
        return bool(self._all(f"SELECT id FROM {CALLS} LIMIT 1"))

    def raw_count(self, filters: Filters) -> int:
        """How many calls match ``filters``, counted in ``calls``."""
        cond, params = filters.conditions(dialect=self.dialect)
        return int(self._all(f"SELECT count(*) FROM {CALLS} WHERE {cond}", params)[0][0])

    @snapshotted
    def page(
        self, filters: Filters, *, sort: str = "time", descending: bool = True, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        """One page of calls in ``sort`` order (ties newest first).

        The page's ids are found first (an index-only scan for time order, so deep offsets stay cheap) and the
        rows fetched by id afterwards.
        """
        cond, params = filters.conditions(dialect=self.dialect)
        order = order_by(self.dialect, sort, descending)
        sql = f"SELECT id FROM {CALLS} WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?"
        ids = [r[0] for r in self._all(sql, [*params, limit, offset])]
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = self._all(f"SELECT {select_list(API_COLUMNS)} FROM {CALLS} WHERE id IN ({marks})", ids)
        by_id = {r[0]: row_dict(API_COLUMNS, r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def export(
        self, filters: Filters, *, sort: str = "time", descending: bool = True, cap: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        """Every matching call (at most ``cap``) in ``sort`` order, streamed from a connection of its own."""
        cond, params = filters.conditions(dialect=self.dialect)
        order = order_by(self.dialect, sort, descending)
        sql = f"SELECT {select_list(API_COLUMNS)} FROM {CALLS} WHERE {cond} ORDER BY {order} LIMIT ?"
        for row in self.engine.iterate(sql, [*params, cap]):
            yield row_dict(API_COLUMNS, row)

    @snapshotted
    def attempts(self, call_id: str, started_at: float, *, window: float = HOUR) -> list[dict[str, Any]]:
        """Every attempt of logical call ``call_id`` recorded within ``window`` seconds of ``started_at``."""
        if not call_id:
            return []
        rows = self._all(
            f"SELECT {select_list(_ATTEMPT_COLUMNS)} FROM {CALLS}"
            " WHERE started_at >= ? AND started_at <= ? AND call_id = ?"
            " ORDER BY attempt ASC NULLS FIRST, started_at, id",
            [started_at - window, started_at + window, call_id],
        )
        return [row_dict(_ATTEMPT_COLUMNS, r) for r in rows]

    @snapshotted
    def latest_errors(self, filters: Filters, limit: int = 25) -> list[dict[str, Any]]:
        """The newest failed calls in the range."""
        cond, params = replace(filters, ok=False).conditions(dialect=self.dialect)
        rows = self._all(
            f"SELECT {select_list(_ERROR_COLUMNS)} FROM {CALLS} WHERE {cond} ORDER BY started_at DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [row_dict(_ERROR_COLUMNS, r) for r in rows]


class Queries(Reader):
    """The API's reads: a page of calls with the total, and one call with every stored field."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine, use_rollups=False)

    @snapshotted
    def requests(self, filters: Filters, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of calls, newest first, and the total matching ``filters`` (one snapshot)."""
        where, params = filters.where(self.dialect)
        total = int(self._all(f"SELECT count(*) FROM {CALLS}{where}", params)[0][0])
        rows = self._all(
            f"SELECT {select_list(API_COLUMNS)} FROM {CALLS}{where} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [api_row(API_COLUMNS, r) for r in rows], total

    @snapshotted
    def request(self, call_pk: int) -> dict[str, Any] | None:
        """Every stored field of one call, or ``None``."""
        rows = self._all(f"SELECT {select_list(DETAIL_COLUMNS)} FROM {CALLS} WHERE id = ?", [call_pk])
        return api_row(DETAIL_COLUMNS, rows[0]) if rows else None
