"""The traces pages: the list of traces (the LLM calls of one inbound request or one ``monitor.trace()`` run, as one
row with its totals), one trace (totals, a waterfall of its calls, the calls), and one session (the traces and
calls tagged ``session=...``, over time).

The list reads and writes the query string like the requests log (:func:`.view.parse_view`, with its own sort
keys :data:`SORTS`); the trace and session views take their id from the path (any text up to
:data:`MAX_ID_LENGTH` characters; percent-encode it, ``/`` included) and auto-refresh while recent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ...store.dbfile import iso
from ...store.read import TRACE_SORTS
from ..params import ParamError, check_text
from ..urls import url_for
from ..waterfall import waterfall
from .base import Dashboard, Data, Handler, is_fragment
from .view import View, parse_view

if TYPE_CHECKING:
    from ...store import Store

SORTS: tuple[str, ...] = tuple(TRACE_SORTS)
"""Sort keys of the traces list (the store's ``Traces.list`` sorts: time, cost, duration, calls, tokens, llm_time)."""
MAX_ID_LENGTH = 200
"""Longest trace or session id accepted in a path (inbound request ids are cut to 128 characters)."""
LIVE_FOR = 600.0
"""A trace or session that ended less than this many seconds ago refreshes itself (it may still gain calls)."""
NO_FACETS: dict[str, list[str]] = {"providers": [], "models": [], "routes": [], "users": []}


def trace_path(trace_id: str) -> str:
    """``traces/<id>``, the id percent-encoded (``/`` too: any text is an id)."""
    return "traces/" + quote(trace_id, safe="")


def session_path(session_id: str) -> str:
    """``sessions/<id>``, the id percent-encoded."""
    return "sessions/" + quote(session_id, safe="")


def parse_key(name: str, value: str) -> str:
    """A trace or session id from the path: non-empty, at most :data:`MAX_ID_LENGTH` characters, printable."""
    if not value:
        raise ParamError(name, "is empty")
    return check_text(name, value, max_length=MAX_ID_LENGTH)


def _linked(row: Mapping[str, Any]) -> dict[str, Any]:
    """A trace row with the paths of its trace view and (if tagged) its session view."""
    session = row.get("session")
    return {**row, "path": trace_path(row["trace_id"]), "session_path": session_path(session) if session else None}


def _live(ended_at: Any, now: float) -> bool:
    return isinstance(ended_at, int | float) and now - ended_at < LIVE_FOR


class TracesPages:
    """The handlers of the three pages, reading ``store.traces`` and rendering through ``dash``."""

    def __init__(self, dash: Dashboard, store: Store) -> None:
        self.dash = dash
        self.store = store

    @property
    def traces(self) -> Any:
        return self.store.traces

    # ---- the list ----------------------------------------------------------------------------------------------

    def table(self, view: View) -> dict[str, Any]:
        """The list region's context: one page of traces and how many there are."""
        rows, total = self.traces.list(
            view.filters, sort=view.sort, descending=view.descending, limit=view.limit, offset=view.offset
        )
        return {
            "rows": [_linked(r) for r in rows],
            "total": total,
            "live": view.offset == 0 and view.sort == "time" and view.descending,
            "sorts": SORTS,
        }

    def listing(self, request: Request, region: bool) -> Response:
        """``traces`` (full page, or its content partial for htmx) or, with ``region``, the table's partial."""
        dash = self.dash
        try:
            view = parse_view(request, sortable=SORTS)
        except ParamError as exc:
            return dash.bad_request(request, exc)
        fragment = is_fragment(request)
        context: dict[str, Any] = {"view": view, "page": "traces", "now": time.time()}
        if region and fragment:
            context.update(self.table(view))
            return dash.render(request, "partials/traces_table.html", **context)
        context["has_calls"] = dash.analytics.has_calls()
        context["facets"] = NO_FACETS
        if context["has_calls"]:
            context["facets"] = Data(dash.analytics, view, dash.cache, latency=False).facets
            context.update(self.table(view))
        response = dash.render(request, "partials/traces.html" if fragment else "traces.html", **context)
        if fragment:  # filter forms and links swap #content: the address bar gets the canonical URL of the view
            response.headers["HX-Push-Url"] = url_for(request, "traces", **view.query())
        return response

    # ---- one trace ---------------------------------------------------------------------------------------------

    def trace(self, request: Request, region: bool) -> Response:
        """``traces/{id}``: totals, the waterfall and the calls of one trace (``region``: the refreshed body)."""
        dash = self.dash
        try:
            trace_id = parse_key("trace_id", request.path_params["trace_id"])
            view = parse_view(request, sortable=SORTS)
        except ParamError as exc:
            return dash.bad_request(request, exc)
        found = self.traces.get(trace_id)
        if found is None:
            return dash.not_found(request, f"No trace with id {trace_id!r}. It may have been deleted by retention.")
        trace = _linked(found["trace"])
        nav = view.nav()
        calls = [{**c, "path": f"requests/{c['id']}"} for c in found["calls"]]
        chart = waterfall(calls, [url_for(request, c["path"], **nav) for c in calls], trace_ms=trace.get("duration_ms"))
        now = time.time()
        context: dict[str, Any] = {
            "view": view,
            "page": "traces",
            "now": now,
            "trace": trace,
            "calls": calls,
            "truncated": bool(found.get("truncated")),
            "waterfall": chart,
            "live": _live(trace.get("ended_at"), now),
            "started_iso": iso(trace.get("started_at")),
            "body_path": "fragments/trace/" + quote(trace_id, safe=""),
        }
        fragment = is_fragment(request)
        if region and fragment:
            return dash.render(request, "partials/trace_body.html", **context)
        return dash.render(request, "partials/trace.html" if fragment else "trace.html", **context)

    # ---- one session -------------------------------------------------------------------------------------------

    def session(self, request: Request, region: bool) -> Response:
        """``sessions/{id}``: the traces and calls tagged ``session=<id>``, with their totals."""
        dash = self.dash
        try:
            session_id = parse_key("session_id", request.path_params["session_id"])
            view = parse_view(request, sortable=SORTS)
        except ParamError as exc:
            return dash.bad_request(request, exc)
        found = self.traces.session(session_id)
        if found is None:
            return dash.not_found(request, f"No calls are tagged session={session_id!r}.")
        summary = found["session"]
        now = time.time()
        context: dict[str, Any] = {
            "view": view,
            "page": "traces",
            "now": now,
            "session": summary,
            "session_id": session_id,
            "traces": [_linked(t) for t in found["traces"]],
            "calls": [
                {
                    **c,
                    "path": f"requests/{c['id']}",
                    "trace_path": trace_path(c["trace_id"]) if c.get("trace_id") else None,
                }
                for c in found["calls"]
            ],
            "truncated": bool(found.get("truncated")),
            "live": _live(summary.get("ended_at"), now),
            "started_iso": iso(summary.get("started_at")),
            "body_path": "fragments/session/" + quote(session_id, safe=""),
        }
        fragment = is_fragment(request)
        if region and fragment:
            return dash.render(request, "partials/session_body.html", **context)
        return dash.render(request, "partials/session.html" if fragment else "session.html", **context)


def handlers(dash: Dashboard, store: Store) -> dict[str, Handler]:
    """``/traces`` and its table's fragment, ``/traces/{id}``, ``/sessions/{id}`` and their bodies' fragments."""
    pages = TracesPages(dash, store)

    def bind(method: Any, region: bool) -> Handler:
        def endpoint(request: Request) -> Response:
            return method(request, region)  # type: ignore[no-any-return]

        return endpoint

    return {
        "/traces": bind(pages.listing, False),
        "/fragments/traces/table": bind(pages.listing, True),
        "/traces/{trace_id:path}": bind(pages.trace, False),
        "/fragments/trace/{trace_id:path}": bind(pages.trace, True),
        "/sessions/{session_id:path}": bind(pages.session, False),
        "/fragments/session/{session_id:path}": bind(pages.session, True),
    }
