"""The read side: request pages and summaries. All SQL the web layer needs lives here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .database import Database
from .schema import CALLS
from .values import stored_tags

API_COLUMNS = (
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
)
DETAIL_COLUMNS = (*API_COLUMNS, "request_content", "response_content")


@dataclass(frozen=True, slots=True)
class Filters:
    """What to select; ``None`` = no constraint. Times are Unix seconds."""

    since: float | None = None
    until: float | None = None
    provider: str | None = None
    model: str | None = None
    ok: bool | None = None
    route: str | None = None
    user: str | None = None
    tag: tuple[str, str] | None = None
    """``(key, value)``: calls whose tags have ``key`` equal to ``value``."""
    q: str | None = None
    """Case-insensitive text search in the error, error type and model."""

    def where(self) -> tuple[str, list[Any]]:
        """``" WHERE ..."`` (or ``""``) and its parameters."""
        cond, params = self.conditions()
        return ("" if cond == "1" else f" WHERE {cond}"), params

    def conditions(self, *, time: bool = True) -> tuple[str, list[Any]]:
        """These filters as one SQL condition over ``calls`` (``"1"`` when empty); ``time=False`` leaves out
        since/until. ``ok`` is a literal, so the partial error index can serve it."""
        clauses: list[str] = []
        params: list[Any] = []
        if time and self.since is not None:
            clauses.append("started_at >= ?")
            params.append(self.since)
        if time and self.until is not None:
            clauses.append("started_at < ?")
            params.append(self.until)
        # Index choice (SQLite has no ANALYZE statistics here, so it guesses): a unary + keeps a term out of index
        # selection. Failed calls are few, so the partial index idx_calls_errors finds them fastest (468 ms -> 0.3 ms
        # at 1M rows); and a provider without a model cannot use (provider, model, started_at) for the time range,
        # so it would scan every row of that provider instead of the range.
        errors = self.ok is False
        for column, value, plus in (
            ("provider", self.provider, errors or self.model is None),
            ("model", self.model, errors),
        ):
            if value is not None:
                clauses.append(f"{'+' if plus else ''}{column} = ?")
                params.append(value)
        if self.ok is not None:
            clauses.append("ok = 1" if self.ok else "ok = 0")
        for column, value in (("route", self.route), ('"user"', self.user)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.tag is not None:
            # json_each, not json_extract(tags, '$."key"'): a JSON path cannot spell every key (a '"' is a syntax
            # error), and it does not match keys stored \u-escaped (json.dumps escapes non-ASCII) at all.
            clauses.append(
                "tags IS NOT NULL AND json_valid(tags) AND EXISTS (SELECT 1 FROM json_each(tags) AS t"
                " WHERE t.key = ? AND t.value = ?)"
            )
            params.extend(self.tag)
        if self.q:
            pattern = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(error LIKE ? ESCAPE '\\' OR error_type LIKE ? ESCAPE '\\' OR model LIKE ? ESCAPE '\\')")
            params.extend([pattern, pattern, pattern])
        return " AND ".join(clauses) or "1", params


def _row(columns: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(columns, values, strict=True))
    row["streamed"] = bool(row["streamed"])
    row["ok"] = bool(row["ok"])
    row["tags"] = stored_tags(row["tags"])
    return row


class Queries:
    """Read-only queries over the ``calls`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.connect().conn.execute(sql, params).fetchall()

    def requests(self, filters: Filters, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of calls, newest first, and the total matching ``filters``."""
        where, params = filters.where()
        total = self._execute(f"SELECT count(*) FROM {CALLS}{where}", params)[0][0]
        rows = self._execute(
            f"SELECT {', '.join(API_COLUMNS)} FROM {CALLS}{where} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [_row(API_COLUMNS, r) for r in rows], total

    def request(self, call_pk: int) -> dict[str, Any] | None:
        """Every stored field of one call, or ``None``."""
        rows = self._execute(f"SELECT {', '.join(DETAIL_COLUMNS)} FROM {CALLS} WHERE id = ?", [call_pk])
        return _row(DETAIL_COLUMNS, rows[0]) if rows else None
