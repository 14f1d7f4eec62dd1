"""The JSON API: ``api/requests``, ``api/requests/{id}``, ``api/summary``, ``api/stats``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..store.analytics import Analytics
from ..store.queries import Filters
from .params import ParamError, iso, parse_choice, parse_int, parse_time

if TYPE_CHECKING:
    from ..monitor import Monitor

MAX_LIMIT = 1000
MAX_Q = 200
"""Longest ``q=`` text search accepted."""
_TAG_KEY = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def parse_tag(value: str | None) -> tuple[str, str] | None:
    """``tag=key:value`` as ``(key, value)``; the key is letters, digits, ``_ - .`` (it goes into a JSON path)."""
    if value is None or value == "":
        return None
    key, sep, tag_value = value.partition(":")
    if not sep:
        raise ParamError("tag", f"{value!r} is not key:value")
    if not _TAG_KEY.fullmatch(key):
        raise ParamError("tag", "the key must be 1-100 letters, digits, '_', '-' or '.'")
    return key, tag_value


def parse_q(value: str | None) -> str | None:
    """The ``q=`` text search (at most :data:`MAX_Q` characters)."""
    if value is None or value == "":
        return None
    if len(value) > MAX_Q:
        raise ParamError("q", f"must be at most {MAX_Q} characters")
    return value


def _filters(request: Request) -> Filters:
    q = request.query_params
    since = parse_time("since", q.get("since"))
    until = parse_time("until", q.get("until"))
    if since is not None and until is not None and since > until:
        raise ParamError("until", "must not be before since")
    status = parse_choice("status", q.get("status"), ("ok", "error"))
    return Filters(
        since=since,
        until=until,
        provider=q.get("provider") or None,
        model=q.get("model") or None,
        ok=None if status is None else status == "ok",
        route=q.get("route") or None,
        user=q.get("user") or None,
        tag=parse_tag(q.get("tag")),
        q=parse_q(q.get("q")),
    )


def _item(row: dict[str, Any]) -> dict[str, Any]:
    row["started_at"] = iso(row["started_at"])
    return row


def bad_request(exc: ParamError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "parameter": exc.parameter}, status_code=400)


def routes(monitor: Monitor) -> list[Route]:
    """The API routes, bound to ``monitor``'s queries."""
    queries = monitor.queries
    analytics = Analytics(monitor.db)

    async def list_requests(request: Request) -> JSONResponse:
        try:
            filters = _filters(request)
            limit = parse_int("limit", request.query_params.get("limit"), default=50, minimum=1, maximum=MAX_LIMIT)
            offset = parse_int("offset", request.query_params.get("offset"), default=0, minimum=0, maximum=10**9)
        except ParamError as exc:
            return bad_request(exc)
        items, total = queries.requests(filters, limit=limit, offset=offset)
        return JSONResponse({"items": [_item(r) for r in items], "total": total, "limit": limit, "offset": offset})

    async def get_request(request: Request) -> JSONResponse:
        raw = request.path_params["id"]
        if not raw.isdigit():
            return bad_request(ParamError("id", f"{raw!r} is not a request id"))
        row = queries.request(int(raw))
        if row is None:
            return JSONResponse({"error": f"no request with id {raw}"}, status_code=404)
        return JSONResponse(_item(row))

    async def summary(request: Request) -> JSONResponse:
        try:
            filters = _filters(request)
        except ParamError as exc:
            return bad_request(exc)
        data = analytics.summary(filters)
        data["since"] = iso(filters.since)
        data["until"] = iso(filters.until)
        return JSONResponse(data)

    async def stats(request: Request) -> JSONResponse:
        data = monitor.stats()
        data["last_write_at"] = iso(data["last_write_at"])
        return JSONResponse(data)

    return [
        Route("/api/requests", list_requests, methods=["GET"]),
        Route("/api/requests/{id}", get_request, methods=["GET"]),
        Route("/api/summary", summary, methods=["GET"]),
        Route("/api/stats", stats, methods=["GET"]),
    ]
