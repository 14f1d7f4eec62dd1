"""The read side: request pages and summaries. All SQL the web layer needs lives here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .database import Database
from .schema import CALLS

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
            clauses.append("tags IS NOT NULL AND json_extract(tags, ?) = ?")
            params.extend([f'$."{self.tag[0]}"', self.tag[1]])
        if self.q:
            pattern = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(error LIKE ? ESCAPE '\\' OR error_type LIKE ? ESCAPE '\\' OR model LIKE ? ESCAPE '\\')")
            params.extend([pattern, pattern, pattern])
        return " AND ".join(clauses) or "1", params


def _row(columns: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(columns, values, strict=True))
    row["streamed"] = bool(row["streamed"])
    row["ok"] = bool(row["ok"])
    row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
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

    def summary(self, filters: Filters) -> dict[str, Any]:
        """Totals, error rate and latency/TTFT percentiles, overall and per provider+model."""
        where, params = filters.where()
        totals = """count(*), sum(1 - ok), sum(input_tokens), sum(output_tokens), sum(total_tokens),
                    sum(cached_tokens), sum(reasoning_tokens), sum(cost_usd)"""
        overall = _totals(self._execute(f"SELECT {totals} FROM {CALLS}{where}", params)[0])
        groups = self._execute(
            f"SELECT provider, model, {totals} FROM {CALLS}{where} GROUP BY provider, model ORDER BY count(*) DESC",
            params,
        )
        latency = self._percentiles(where, params, "duration_ms", (0.5, 0.95, 0.99))
        ttft = self._percentiles(where, params, "ttft_ms", (0.5, 0.95))
        overall.update(_named("latency", latency.get(None, {}), (0.5, 0.95, 0.99)))
        overall.update(_named("ttft", ttft.get(None, {}), (0.5, 0.95)))
        by_model = []
        for provider, model, *values in groups:
            item = {"provider": provider, "model": model, **_totals(tuple(values))}
            item.update(_named("latency", latency.get((provider, model), {}), (0.5, 0.95, 0.99)))
            item.update(_named("ttft", ttft.get((provider, model), {}), (0.5, 0.95)))
            by_model.append(item)
        overall["by_model"] = by_model
        return overall

    def _percentiles(
        self, where: str, params: list[Any], column: str, quantiles: tuple[float, ...]
    ) -> dict[tuple[str, str] | None, dict[float, float]]:
        """Nearest-rank percentiles of ``column``, overall (key ``None``) and per (provider, model)."""
        cond = f"{where} AND {column} IS NOT NULL" if where else f" WHERE {column} IS NOT NULL"
        # Nearest rank: rn = max(1, ceil(q * n)), with ceil spelled in integer arithmetic for older SQLite builds.
        ranks = " OR ".join(
            f"rn = max(1, CAST({q} * n AS INTEGER) + ({q} * n > CAST({q} * n AS INTEGER)))" for q in quantiles
        )
        result: dict[tuple[str, str] | None, dict[float, float]] = {}
        for partition, key_cols in (("", ""), ("PARTITION BY provider, model", "provider, model, ")):
            sql = f"""
                SELECT {key_cols} rn, n, {column} FROM (
                    SELECT {key_cols} {column},
                        row_number() OVER ({partition} ORDER BY {column}) AS rn,
                        count(*) OVER ({partition}) AS n
                    FROM {CALLS}{cond}
                ) WHERE {ranks}
            """
            for row in self._execute(sql, params):
                if key_cols:
                    provider, model, rn, n, value = row
                    key: tuple[str, str] | None = (provider, model)
                else:
                    rn, n, value = row
                    key = None
                bucket = result.setdefault(key, {})
                for q in quantiles:
                    if rn == max(1, math.ceil(q * n)):
                        bucket[q] = value
        return result


def _totals(values: tuple[Any, ...]) -> dict[str, Any]:
    requests, errors, inp, out, total, cached, reasoning, cost = values
    errors = errors or 0
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": (errors / requests) if requests else None,
        "input_tokens": inp or 0,
        "output_tokens": out or 0,
        "total_tokens": total or 0,
        "cached_tokens": cached or 0,
        "reasoning_tokens": reasoning or 0,
        "cost_usd": cost or 0.0,
    }


def _named(prefix: str, values: dict[float, float], quantiles: tuple[float, ...]) -> dict[str, float | None]:
    return {f"{prefix}_p{round(q * 100)}_ms": values.get(q) for q in quantiles}
