"""The request detail page: one stored call, its timing as a timeline, the other attempts of its call (with the
back-off between them), the tool calls the model asked for, and links to its trace and session."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ...store.dbfile import iso
from .. import charts
from .. import format as fm
from ..params import ParamError, parse_id
from .base import Dashboard, Handler, is_fragment
from .view import parse_view

MAX_TOOL_CALLS = 100
"""Most tool calls listed with their arguments (the count above the list is the stored one)."""
MAX_ARGUMENTS_CHARS = 20_000
"""Longest arguments text shown for one tool call (stored arguments are cut at the monitor's content limit)."""


def attempt_rows(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempts of one call with ``time_ms`` (their start, to the millisecond), ``offset_ms`` (from the first
    attempt's start) and ``backoff_ms`` (from the previous attempt's end to this one's start; ``None`` for the first
    attempt or when the previous duration is unknown)."""
    out: list[dict[str, Any]] = []
    first = attempts[0]["started_at"] if attempts else 0.0
    previous: dict[str, Any] | None = None
    for a in attempts:
        backoff = None
        if previous is not None and previous.get("duration_ms") is not None:
            backoff = (a["started_at"] - previous["started_at"]) * 1000 - previous["duration_ms"]
        out.append(
            {
                **a,
                "time_ms": fm.utc_ms(a["started_at"]),
                "offset_ms": (a["started_at"] - first) * 1000,
                "backoff_ms": backoff,
                "previous_attempt": previous.get("attempt") if previous is not None else None,
            }
        )
        previous = a
    return out


def _pretty(arguments: Any) -> str:
    """Tool arguments as indented JSON (OpenAI sends them as a JSON string, Anthropic and Gemini as an object)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments[:MAX_ARGUMENTS_CHARS]
    text = json.dumps(arguments, indent=2, ensure_ascii=False)
    return text[:MAX_ARGUMENTS_CHARS]


def tool_calls(row: dict[str, Any]) -> dict[str, Any]:
    """The tool calls of a call as the page lists them: ``count`` (``None`` when unknown), ``names``, ``calls``
    (``[{"name", "arguments"}]`` when the arguments were captured and parse) and ``raw`` (captured arguments that do
    not parse, e.g. cut at the content limit)."""
    count = row.get("tool_call_count")
    names = row.get("tool_names")
    if isinstance(names, str):  # stored as JSON text where a reader has not decoded it
        try:
            names = json.loads(names)
        except ValueError:
            names = [names]
    stored = row.get("tool_arguments")
    calls: list[dict[str, str]] = []
    raw: str | None = None
    if stored:
        try:
            parsed = json.loads(stored)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            for item in parsed[:MAX_TOOL_CALLS]:
                if isinstance(item, dict):
                    calls.append({"name": str(item.get("name") or "?"), "arguments": _pretty(item.get("arguments"))})
        else:
            raw = stored[:MAX_ARGUMENTS_CHARS]
    return {"count": count, "names": list(names or []), "calls": calls, "raw": raw}


def links(row: dict[str, Any]) -> dict[str, str | None]:
    """Paths (relative to the dashboard) of the call's trace and session pages, ``None`` where it has none."""
    trace_id = row.get("trace_id")
    session = (row.get("tags") or {}).get("session")
    return {
        "trace": f"traces/{quote(str(trace_id), safe='')}" if trace_id else None,
        "session": f"sessions/{quote(str(session), safe='')}" if session else None,
    }


def handlers(dash: Dashboard) -> dict[str, Handler]:
    """``/requests/{id}``."""

    def detail(request: Request) -> Response:
        try:
            call_pk = parse_id("id", request.path_params["id"])
        except ParamError as exc:
            return dash.bad_request(request, exc)
        row = dash.queries.request(call_pk)
        if row is None:
            return dash.not_found(request, f"No request with id {call_pk}. It may have been deleted by retention.")
        try:
            view = parse_view(request)
        except ParamError as exc:
            return dash.bad_request(request, exc)
        attempts = attempt_rows(dash.analytics.attempts(row["call_id"], row["started_at"]))
        return dash.render(
            request,
            "partials/detail.html" if is_fragment(request) else "detail.html",
            view=view,
            page="requests",
            row=row,
            attempts=attempts,
            tools=tool_calls(row),
            links=links(row),
            key_name=dash.key_names.name(row.get("key_fingerprint")),
            timeline=charts.timeline(row["duration_ms"], row["ttft_ms"], row["ttlt_ms"]),
            started_iso=iso(row["started_at"]),
            started_ms=fm.utc_ms(row["started_at"], date=True),
        )

    return {"/requests/{id}": detail}
