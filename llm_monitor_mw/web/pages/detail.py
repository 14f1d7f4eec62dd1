"""The request detail page: one stored call, its timing as a timeline, and the other attempts of its call."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...store.dbfile import iso
from .. import charts
from ..params import ParamError, parse_id
from .base import Dashboard, Handler, is_fragment
from .view import parse_view


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
        attempts = dash.analytics.attempts(row["call_id"], row["started_at"])
        return dash.render(
            request,
            "partials/detail.html" if is_fragment(request) else "detail.html",
            view=view,
            page="requests",
            row=row,
            attempts=attempts,
            timeline=charts.timeline(row["duration_ms"], row["ttft_ms"], row["ttlt_ms"]),
            started_iso=iso(row["started_at"]),
        )

    return {"/requests/{id}": detail}
