"""Traces and sessions: the calls of one inbound request or one ``monitor.trace()`` run, and of one conversation.

A trace is every call sharing a ``trace_id``. The writer keeps one row per trace in ``trace_totals`` (its totals,
added up in the projection pass, see :func:`~llm_monitor_mw.store.projections.upsert_traces`), so a page of traces
is an index range, whatever the number of calls; rows past the projection cursor are merged in from ``calls``
(:meth:`Traces._source`), so answers are exact at any moment. One trace (:meth:`Traces.get`) and one session
(:meth:`Traces.session`, the calls tagged ``session``) are read from their calls through indexes.

Filters as on the requests log. ``route`` and ``user`` select by the trace's own (its calls' least non-NULL value:
they are the same on every call of one inbound request), through indexes of the projection; every other filter
(provider, model, status, instance, tag, tool, text) selects the traces having at least one matching call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..projections import TRACE_COLUMNS, select_traces, trace_exprs, trace_merge
from ..schema import CALLS, TRACE_SUMS, TRACES
from ..values import PLAUSIBLE
from .base import Reader, snapshotted
from .calls import API_COLUMNS, row_dict
from .filters import Filters


def _q(column: str) -> str:
    return '"user"' if column == "user" else column


TRACE_SORTS: dict[str, str] = {
    "time": "t.started_at",
    "cost": "CASE WHEN t.cost_n > 0 THEN t.cost_usd END",
    "duration": "(t.ended_at - t.started_at)",
    "calls": "t.calls",
    "tokens": "CASE WHEN t.total_n > 0 THEN t.total_tokens END",
    "llm_time": "CASE WHEN t.duration_n > 0 THEN t.llm_ms END",
}
"""Sort keys of :meth:`Traces.list`, mapped to (whitelisted) SQL over a trace row ``t``."""
_FLOAT_SORTS = frozenset({"cost", "duration", "llm_time"})
MAX_CALLS = 1000
"""Calls :meth:`Traces.get` and :meth:`Traces.session` return at most (the totals count them all)."""
MAX_SESSION_TRACES = 1000
"""Traces :meth:`Traces.session` lists at most."""
_COLUMNS = ", ".join(f"t.{_q(c)}" for c in TRACE_COLUMNS)
_SESSION_SUMS = ("started_at", "ended_at", *TRACE_SUMS)
"""The trace columns a session adds up too (its attributes are the trace's, not the session's)."""
_SESSION_KEYS = (
    "started_at",
    "ended_at",
    "duration_ms",
    "llm_ms",
    "calls",
    "attempts",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "cost_unknown",
    "errors",
    "tool_calls",
)


def _usable(dialect_name: str, text: Any) -> bool:
    """Whether ``text`` can be a stored id at all (else the answer is "unknown" without asking the database: a lone
    surrogate cannot be encoded, and PostgreSQL text holds no NUL)."""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not (dialect_name == "postgresql" and "\x00" in text)


def _finite(value: Any) -> Any:
    if value.__class__ is float and value - value != 0.0:
        return None
    return value


def _number(value: Any, known: Any, *, is_float: bool = False) -> Any:
    """A sum as shown: ``None`` when no call knew it (``known`` is 0), else an int (or a float)."""
    if not known or value is None:
        return None
    value = _finite(float(value))
    if value is None:
        return None
    return value if is_float else int(value)


def trace_name(row: dict[str, Any]) -> str:
    """``trace_name``, else ``"METHOD route"``, else the method, else the trace id."""
    if row.get("trace_name") is not None:
        return row["trace_name"]
    if row.get("route") is not None:
        return " ".join(x for x in (row.get("inbound_method"), row["route"]) if x)
    return row.get("inbound_method") or row["trace_id"]


def _shown(values: Sequence[Any]) -> dict[str, Any]:
    """A trace row (:data:`TRACE_COLUMNS` values) as the API shows it."""
    r = dict(zip(TRACE_COLUMNS, values, strict=True))
    started, ended = _finite(r["started_at"]), _finite(r["ended_at"])
    duration = (ended - started) * 1000 if started is not None and ended is not None else None
    return {
        "trace_id": r["trace_id"],
        "name": trace_name(r),
        "kind": "run" if r["trace_name"] is not None else "request",
        "started_at": started,
        "ended_at": ended,
        "duration_ms": duration,
        "llm_ms": _number(r["llm_ms"], r["duration_n"], is_float=True),
        "calls": int(r["calls"]),
        "attempts": int(r["attempts"]),
        "input_tokens": _number(r["input_tokens"], r["input_n"]),
        "output_tokens": _number(r["output_tokens"], r["output_n"]),
        "total_tokens": _number(r["total_tokens"], r["total_n"]),
        "cost_usd": _number(r["cost_usd"], r["cost_n"], is_float=True),
        "cost_unknown": int(r["unpriced"]),
        "errors": int(r["errors"]),
        "tool_calls": _number(r["tool_calls"], r["tool_n"]),
        "route": r["route"],
        "user": r["user"],
        "inbound_method": r["inbound_method"],
        "instance": r["instance"],
        "session": r["session"],
        "providers": [],
        "models": [],
    }


class Traces(Reader):
    """Traces (one inbound request, or one ``monitor.trace()`` run) and sessions, read-only."""

    def _source(self) -> tuple[str, list[Any]]:
        """A ``FROM`` item of trace rows (:data:`TRACE_COLUMNS`): the projection, plus the rows past its cursor
        merged in; every trace from raw rows with ``use_rollups=False``."""
        d = self.dialect
        if not self._rolled:
            return f"({select_traces(d, '1 = 1')})", []
        if not self.pending():
            return TRACES, []
        cursor = self.cursor()
        merged = trace_merge(d, "p", "n", outer=True)
        columns = ", ".join("n.trace_id" if c == "trace_id" else f"{merged[c]} AS {_q(c)}" for c in TRACE_COLUMNS)
        tail = select_traces(d, f"{CALLS}.id > ?")
        sql = (
            f"(SELECT {', '.join(_q(c) for c in TRACE_COLUMNS)} FROM {TRACES}"
            f" WHERE trace_id NOT IN (SELECT trace_id FROM {CALLS} WHERE id > ? AND trace_id IS NOT NULL)"
            f" UNION ALL SELECT {columns} FROM ({tail}) AS n LEFT JOIN {TRACES} AS p ON p.trace_id = n.trace_id)"
        )
        return sql, [cursor, cursor]

    def _where(self, filters: Filters) -> tuple[str, list[Any]]:
        """The condition over trace rows ``t`` for ``filters`` (a trace is in a range when it started in it)."""
        clauses: list[str] = []
        params: list[Any] = []
        if filters.since is not None:
            clauses.append("t.started_at >= ?")
            params.append(filters.since)
        if filters.until is not None:
            clauses.append("t.started_at < ?")
            params.append(filters.until)
        for column, value in (("t.route", filters.route), ('t."user"', filters.user)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        per_call = replace(filters, since=None, until=None, route=None, user=None, after_id=None)
        if per_call != Filters():
            cond, cond_params = per_call.conditions(dialect=self.dialect)
            # a trace's calls start at or after the trace: the lower bound keeps the scan to the range
            lower = ""
            if filters.since is not None:
                lower = " AND started_at >= ?"
                cond_params = [filters.since, *cond_params]
            clauses.append(f"t.trace_id IN (SELECT trace_id FROM {CALLS} WHERE trace_id IS NOT NULL{lower} AND {cond})")
            params.extend(cond_params)
        return " AND ".join(clauses) or "1 = 1", params

    def _order(self, sort: str, descending: bool) -> str:
        expr = TRACE_SORTS.get(sort)
        if expr is None:
            raise ValueError(f"cannot sort traces by {sort!r}")
        direction = "DESC" if descending else "ASC"
        tie = f"t.started_at DESC, {self.dialect.collate_c('t.trace_id')} DESC"
        if sort == "time":
            return f"t.started_at {direction}, {self.dialect.collate_c('t.trace_id')} {direction}"
        if sort in _FLOAT_SORTS:
            # rounded: the projection adds a trace's calls in batches, so a sum may differ in its last bits
            expr = f"round(CAST({expr} AS NUMERIC), 9)" if self.dialect.name == "postgresql" else f"round({expr}, 9)"
        return f"{expr} {direction} NULLS LAST, {tie}"

    def _rows(self, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The shown rows of ``trace_ids`` (with their providers and models), by id."""
        if not trace_ids:
            return {}
        source, params = self._source()
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(trace_ids), 500):
            chunk = list(trace_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            for values in self._all(
                f"SELECT {_COLUMNS} FROM {source} AS t WHERE t.trace_id IN ({marks})", [*params, *chunk]
            ):
                out[values[0]] = _shown(values)
            for trace_id, provider, model in self._all(
                f"SELECT trace_id, provider, model FROM {CALLS} WHERE trace_id IS NOT NULL AND trace_id IN ({marks})"
                " GROUP BY trace_id, provider, model",
                chunk,
            ):
                row = out.get(trace_id)
                if row is not None:
                    row["providers"].append(provider)
                    if model is not None:
                        row["models"].append(model)
        for row in out.values():
            row["providers"] = sorted(set(row["providers"]))
            row["models"] = sorted(set(row["models"]))
        return out

    @snapshotted
    def list(
        self,
        filters: Filters,
        *,
        sort: str = "time",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the traces that started in the range and match ``filters``, in ``sort`` order (one of
        :data:`TRACE_SORTS`; unknown figures last, ties newest first), and how many match in all."""
        order = self._order(sort, descending)
        source, source_params = self._source()
        where, params = self._where(filters)
        total = int(self._all(f"SELECT count(*) FROM {source} AS t WHERE {where}", [*source_params, *params])[0][0])
        if not total or offset >= total:
            return [], total
        ids = [
            r[0]
            for r in self._all(
                f"SELECT t.trace_id FROM {source} AS t WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*source_params, *params, max(0, limit), max(0, offset)],
            )
        ]
        rows = self._rows(ids)
        return [rows[i] for i in ids if i in rows], total

    @snapshotted
    def get(self, trace_id: str) -> dict[str, Any] | None:
        """One trace: ``{"trace": <row as in list()>, "calls": [...], "truncated": bool}``; ``None`` if unknown.

        The calls (at most :data:`MAX_CALLS`, by start time) carry the API columns and ``offset_ms`` from the
        trace's start; the totals count every call of the trace.
        """
        if not _usable(self.dialect.name, trace_id):
            return None
        rows = self._all(select_traces(self.dialect, f"{CALLS}.trace_id = ?"), [trace_id])
        if not rows:
            return None
        trace = _shown(rows[0])
        for _, provider, model in self._all(
            f"SELECT trace_id, provider, model FROM {CALLS} WHERE trace_id = ? GROUP BY trace_id, provider, model",
            [trace_id],
        ):
            trace["providers"].append(provider)
            if model is not None:
                trace["models"].append(model)
        trace["providers"], trace["models"] = sorted(set(trace["providers"])), sorted(set(trace["models"]))
        calls = self._calls("trace_id = ?", [trace_id], trace["started_at"])
        return {"trace": trace, "calls": calls[:MAX_CALLS], "truncated": len(calls) > MAX_CALLS}

    def _calls(self, cond: str, params: list[Any], origin: float | None) -> list[dict[str, Any]]:
        """Up to :data:`MAX_CALLS` + 1 calls matching ``cond``, by start time, with ``offset_ms`` from ``origin``."""
        select = ", ".join(f'"{c}"' for c in API_COLUMNS)
        out = []
        for values in self._all(
            f"SELECT {select} FROM {CALLS} WHERE {cond} ORDER BY started_at, id LIMIT ?", [*params, MAX_CALLS + 1]
        ):
            row = row_dict(API_COLUMNS, values)
            start = row["started_at"]
            offset = (start - origin) * 1000 if origin is not None and start is not None else None
            row["offset_ms"] = _finite(offset)
            out.append(row)
        return out

    @snapshotted
    def session(self, session_id: str, filters: Filters | None = None) -> dict[str, Any] | None:
        """One conversation: the calls tagged ``session`` = ``session_id`` (and matching ``filters``).

        ``{"session": {id, started_at, ended_at, duration_ms, calls, attempts, tokens, cost, errors, tool_calls,
        llm_ms, traces}, "traces": [trace rows], "calls": [call rows], "truncated": bool}``; ``None`` when no call
        has it. Totals count every matching call; at most :data:`MAX_CALLS` calls and :data:`MAX_SESSION_TRACES`
        traces are listed.
        """
        if not _usable(self.dialect.name, session_id):
            return None
        d = self.dialect
        tag = d.tag_value("tags", "session")
        # the expression twice, as the partial index idx_calls_session spells it, so the planner can use it
        cond = f"({tag}) = ? AND ({tag}) IS NOT NULL"
        params: list[Any] = [session_id]
        if filters is not None and filters != Filters():
            extra, extra_params = filters.conditions(dialect=d)
            cond += f" AND {extra}"
            params.extend(extra_params)
        exprs = trace_exprs(d)
        sums = ", ".join(exprs[c] for c in _SESSION_SUMS)
        timed = f"{CALLS}.started_at > -{PLAUSIBLE} AND {CALLS}.started_at < {PLAUSIBLE}"
        totals = self._all(
            f"SELECT {sums}, count(DISTINCT trace_id), count(*) FROM {CALLS} WHERE {cond} AND {timed}", params
        )[0]
        if not totals[-1]:
            return None
        row = dict.fromkeys(TRACE_COLUMNS) | dict(zip(_SESSION_SUMS, totals, strict=False)) | {"trace_id": session_id}
        shown = _shown([row[c] for c in TRACE_COLUMNS])
        summary = {"id": session_id, **{k: shown[k] for k in _SESSION_KEYS}, "traces": int(totals[-2])}
        ids = [
            r[0]
            for r in self._all(
                f"SELECT DISTINCT trace_id FROM {CALLS} WHERE {cond} AND trace_id IS NOT NULL LIMIT ?",
                [*params, MAX_SESSION_TRACES],
            )
        ]
        traces = sorted(self._rows(ids).values(), key=lambda r: (r["started_at"] is None, r["started_at"] or 0.0))
        calls = self._calls(cond, params, summary["started_at"])
        return {"session": summary, "traces": traces, "calls": calls[:MAX_CALLS], "truncated": len(calls) > MAX_CALLS}
