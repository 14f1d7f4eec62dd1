"""The JSON API: ``api/requests``, ``api/requests/{id}``, ``api/traces``, ``api/traces/{id}``,
``api/sessions/{id}``, ``api/summary``, ``api/keys``, ``api/stats``.

Handlers are plain functions: the app runs them behind its :class:`~.gate.Gate`, in threads of its own.
Every answer is a :class:`~.responses.JSONAnswer`; a bad parameter is ``400 {"error": ..., "parameter": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..store.dbfile import iso
from ..store.read import Filters
from ..store.read.keys import KEY_ORDERS, MAX_KEYS
from .gate import Gate
from .keys import KeyNames
from .pages.traces import SORTS as TRACE_SORTS
from .pages.traces import parse_key
from .params import (
    ParamError,
    parse_choice,
    parse_dimensions,
    parse_id,
    parse_int,
    parse_tag,
    parse_text,
    parse_time,
)
from .responses import JSONAnswer

if TYPE_CHECKING:
    from ..store import Store

MAX_LIMIT = 1000
MAX_OFFSET = 10**9
MAX_Q = 200
"""Longest ``q=`` text search accepted."""

__all__ = ["MAX_LIMIT", "MAX_Q", "bad_request", "parse_q", "parse_tag", "routes"]


def parse_q(value: str | None) -> str | None:
    """The ``q=`` text search (at most :data:`MAX_Q` characters, no control characters)."""
    return parse_text("q", value, max_length=MAX_Q)


def _filters(request: Request) -> Filters:
    q = request.query_params
    since = parse_time("since", q.get("since"))
    until = parse_time("until", q.get("until"))
    if since is not None and until is not None and since > until:
        raise ParamError("until", "must not be before since")
    return Filters(since=since, until=until, **parse_dimensions(q), q=parse_q(q.get("q")))


def _item(row: dict[str, Any]) -> dict[str, Any]:
    row["started_at"] = iso(row["started_at"])
    return row


def _trace_item(row: dict[str, Any]) -> dict[str, Any]:
    """A trace (or session) summary with its times as ISO-8601."""
    return {**row, "started_at": iso(row.get("started_at")), "ended_at": iso(row.get("ended_at"))}


def bad_request(exc: ParamError) -> JSONAnswer:
    """``400`` naming the bad parameter."""
    return JSONAnswer({"error": exc.message, "parameter": exc.parameter}, status_code=400)


def routes(store: Store, gate: Gate, key_names: KeyNames | None = None) -> list[Route]:
    """The API routes, bound to ``store``'s reads (the dashboard's own :class:`Analytics`), each behind ``gate``;
    ``key_names`` names API keys in ``api/keys`` and ``api/requests/{id}``."""
    queries = store.queries
    analytics = store.analytics
    names = key_names if key_names is not None else KeyNames()

    def list_requests(request: Request) -> Response:
        try:
            filters = _filters(request)
            limit = parse_int("limit", request.query_params.get("limit"), default=50, minimum=1, maximum=MAX_LIMIT)
            offset = parse_int("offset", request.query_params.get("offset"), default=0, minimum=0, maximum=MAX_OFFSET)
        except ParamError as exc:
            return bad_request(exc)
        items, total = queries.requests(filters, limit=limit, offset=offset)
        return JSONAnswer({"items": [_item(r) for r in items], "total": total, "limit": limit, "offset": offset})

    def get_request(request: Request) -> Response:
        try:
            call_pk = parse_id("id", request.path_params["id"])
        except ParamError as exc:
            return bad_request(exc)
        row = queries.request(call_pk)
        if row is None:
            return JSONAnswer({"error": f"no request with id {call_pk}"}, status_code=404)
        if "key_fingerprint" in row:
            row["key_name"] = names.name(row["key_fingerprint"])
        return JSONAnswer(_item(row))

    def list_traces(request: Request) -> Response:
        q = request.query_params
        try:
            filters = _filters(request)
            sort = parse_choice("sort", q.get("sort"), TRACE_SORTS) or "time"
            direction = parse_choice("dir", q.get("dir"), ("asc", "desc")) or "desc"
            limit = parse_int("limit", q.get("limit"), default=50, minimum=1, maximum=MAX_LIMIT)
            offset = parse_int("offset", q.get("offset"), default=0, minimum=0, maximum=MAX_OFFSET)
        except ParamError as exc:
            return bad_request(exc)
        items, total = store.traces.list(filters, sort=sort, descending=direction == "desc", limit=limit, offset=offset)
        return JSONAnswer(
            {
                "items": [_trace_item(r) for r in items],
                "total": total,
                "limit": limit,
                "offset": offset,
                "sort": sort,
                "dir": direction,
            }
        )

    def get_trace(request: Request) -> Response:
        try:
            trace_id = parse_key("trace_id", request.path_params["trace_id"])
        except ParamError as exc:
            return bad_request(exc)
        found = store.traces.get(trace_id)
        if found is None:
            return JSONAnswer({"error": f"no trace with id {trace_id!r}"}, status_code=404)
        return JSONAnswer(
            {
                "trace": _trace_item(found["trace"]),
                "calls": [_item(c) for c in found["calls"]],
                "truncated": bool(found.get("truncated")),
            }
        )

    def get_session(request: Request) -> Response:
        try:
            session_id = parse_key("session_id", request.path_params["session_id"])
        except ParamError as exc:
            return bad_request(exc)
        found = store.traces.session(session_id)
        if found is None:
            return JSONAnswer({"error": f"no calls tagged session={session_id!r}"}, status_code=404)
        return JSONAnswer(
            {
                "session": _trace_item(found["session"]),
                "traces": [_trace_item(t) for t in found["traces"]],
                "calls": [_item(c) for c in found["calls"]],
            }
        )

    def summary(request: Request) -> Response:
        try:
            filters = _filters(request)
        except ParamError as exc:
            return bad_request(exc)
        data = analytics.summary(filters)
        data["since"] = iso(filters.since)
        data["until"] = iso(filters.until)
        return JSONAnswer(data)

    def keys(request: Request) -> Response:
        q = request.query_params
        try:
            filters = _filters(request)
            order = parse_choice("order", q.get("order"), tuple(KEY_ORDERS)) or "cost"
            limit = parse_int("limit", q.get("limit"), default=20, minimum=1, maximum=MAX_KEYS)
        except ParamError as exc:
            return bad_request(exc)
        rows = names.rows(analytics.by_key(filters, order=order, limit=limit))
        return JSONAnswer(
            {
                "items": rows,
                "order": order,
                "limit": limit,
                "since": iso(filters.since),
                "until": iso(filters.until),
            }
        )

    def stats(request: Request) -> Response:
        data = store.stats()
        data["last_write_at"] = iso(data["last_write_at"])
        return JSONAnswer(data)

    handlers: dict[str, Callable[[Request], Response]] = {
        "/api/requests": list_requests,
        "/api/requests/{id}": get_request,
        "/api/traces": list_traces,
        "/api/traces/{trace_id:path}": get_trace,
        "/api/sessions/{session_id:path}": get_session,
        "/api/summary": summary,
        "/api/keys": keys,
        "/api/stats": stats,
    }
    return [Route(path, gate.endpoint(handler, "json"), methods=["GET"]) for path, handler in handlers.items()]
