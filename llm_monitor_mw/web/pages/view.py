"""What a dashboard page shows: the time range, filters and list state parsed from (and turned back into) the
query string."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request

from ...store.read import SORTABLE, Filters
from .. import format as fm
from ..params import (
    ParamError,
    check_text,
    parse_choice,
    parse_dimensions,
    parse_int,
    parse_text,
    parse_time,
)

RANGES: dict[str, int] = {
    "15m": 15 * 60,
    "1h": 3600,
    "6h": 6 * 3600,
    "24h": 86400,
    "7d": 7 * 86400,
    "30d": 30 * 86400,
    "90d": 90 * 86400,
}
DEFAULT_RANGE = "24h"
PAGE_SIZES = (25, 50, 100, 200)
STEP_NAMES = {60: "minute", 3600: "hour", 86400: "day"}


def step_for(span: float) -> int:
    """Chart bucket size for a range: a minute up to 3 h, an hour up to 7 d, a day beyond."""
    if span <= 3 * 3600:
        return 60
    if span <= 7 * 86400:
        return 3600
    return 86400


SPARSE_SHARE = 0.25
"""A series whose calls all fall in the last quarter of the range (or less) is drawn from its first call on."""
CROP_UNITS = {60: 900, 3600: 6 * 3600, 86400: 86400}
"""What a cropped chart's start is rounded down to, per bucket size: a round quarter hour, 6 hours, day."""


@dataclass(frozen=True, slots=True)
class ChartWindow:
    """Where a chart starts and its bucket size, when the range has little data: from a round time before the
    range's first call, in buckets fine enough for that span (see :func:`chart_window`)."""

    since: float
    step: int


def chart_window(view: View, series: Sequence[Mapping[str, Any]]) -> ChartWindow | None:
    """A cropped, finer window for the charts of ``view`` when its ``series`` (at ``view.step``) has all its calls
    in the last :data:`SPARSE_SHARE` of a range longer than 3 hours; ``None`` to chart the whole range.

    A 24-hour range with an hour of data gets minute buckets from the quarter hour before its first call instead
    of one hour bar. Minute buckets come from raw rows, so they are only chosen for at most 3 hours of data (the
    longest range the pages read raw anyway); longer extents keep the roll-ups' hours and days.
    """
    if view.span <= 3 * 3600:
        return None
    first = next((p["ts"] for p in series if p.get("requests")), None)
    if first is None or first <= view.since:
        return None
    extent = view.until - first
    if extent > view.span * SPARSE_SHARE:
        return None
    step = min(step_for(extent), view.step)
    unit = CROP_UNITS.get(step, step)
    return ChartWindow(since=max(view.since, math.floor(first / unit) * unit), step=step)


class ChartSource(Protocol):
    """What :func:`chart_series` reads (a page's ``Data``): the view, its report, the store's reads."""

    view: View
    analytics: Any
    latency: bool

    @property
    def report(self) -> Any: ...


def chart_series(data: ChartSource) -> tuple[list[dict[str, Any]], int, str]:
    """The series the charts of ``data``'s view draw, their bucket size, and a note ('' or where they start).

    Usually the page's report series; for a range with little data (see :func:`chart_window`) the part from
    shortly before the first call, read again in finer buckets when that is what makes it legible."""
    view = data.view
    series = data.report.series
    window = chart_window(view, series)
    if window is None:
        return series, view.step, ""
    if window.step == view.step:
        cropped = [p for p in series if p["ts"] + view.step > window.since]
    else:
        filters = replace(view.filters, since=window.since)
        cropped = data.analytics.report(filters, window.step, latency=data.latency).series
        first = next((p["ts"] for p in cropped if p.get("requests")), None)
        if first is not None:  # the finer buckets find the first call more precisely: start nearer to it
            unit = CROP_UNITS.get(window.step, window.step)
            cropped = [p for p in cropped if p["ts"] >= math.floor(first / unit) * unit]
    start = cropped[0]["ts"] if cropped else window.since
    return cropped, window.step, f"from {fm.utc(start, 60)} UTC: no calls earlier in the range"


@dataclass(frozen=True, slots=True)
class View:
    """The time range, filters and list state of one request, parsed from its query string."""

    range: str | None
    """A preset key (``24h``), or ``None`` for a custom ``since``/``until``."""
    since: float
    until: float
    filters: Filters
    raw: dict[str, str] = field(default_factory=dict)
    """The query parameters as given (non-empty ones), to rebuild URLs."""
    sort: str = "time"
    descending: bool = True
    limit: int = 50
    offset: int = 0
    rank: str = "cost"

    @property
    def span(self) -> float:
        return self.until - self.since

    @property
    def step(self) -> int:
        return step_for(self.span)

    @property
    def step_name(self) -> str:
        return STEP_NAMES[self.step]

    @property
    def previous(self) -> Filters:
        """The same filters over the period of equal length just before this one."""
        return replace(self.filters, since=self.since - self.span, until=self.since)

    @property
    def filtered(self) -> bool:
        """Whether anything beyond the time range narrows the rows."""
        f = self.filters
        dimensions = (f.provider, f.model, f.ok, f.route, f.user, f.instance, f.tag, f.tool, f.key)
        return any(v is not None for v in dimensions) or bool(f.q)

    def query(self, *, keep: tuple[str, ...] | None = None, **changes: object) -> dict[str, str]:
        """The query string reproducing this view, with ``changes`` (``None`` drops a parameter).

        ``keep`` limits the result to those parameters (before ``changes``), e.g. the range for navigation.
        """
        params = {k: v for k, v in self.raw.items() if keep is None or k in keep}
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        return params

    def nav(self) -> dict[str, str]:
        """What the tabs carry from page to page: the range and the provider/model filters."""
        return self.query(keep=("range", "since", "until", "provider", "model"))

    def input_time(self, which: str) -> str:
        """``since``/``until`` for a ``datetime-local`` input (UTC, minutes)."""
        ts = self.since if which == "since" else self.until
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")


QUERY_KEYS = (
    "range",
    "since",
    "until",
    "provider",
    "model",
    "status",
    "route",
    "user",
    "instance",
    "tag",
    "tool",
    "key",
    "q",
)
MAX_PARAM = 400
"""Longest value of any known parameter (the text filters have tighter limits of their own)."""
LIST_KEYS = ("sort", "dir", "limit", "offset", "rank")


def parse_view(request: Request, *, now: float | None = None, sortable: Collection[str] = SORTABLE) -> View:
    """Parse the query string into a :class:`View`; raises :class:`ParamError` naming a bad parameter.

    ``sortable``: the ``sort`` keys the page accepts (default: the requests log's)."""
    q = request.query_params
    now = time.time() if now is None else now
    raw = {k: check_text(k, q[k], max_length=MAX_PARAM) for k in (*QUERY_KEYS, *LIST_KEYS) if q.get(k)}
    until = parse_time("until", q.get("until"), now=now)
    since = parse_time("since", q.get("since"), now=now)
    end = now if until is None else until
    preset: str | None = None
    if since is None:
        preset = parse_choice("range", q.get("range"), tuple(RANGES)) or DEFAULT_RANGE
        since = end - RANGES[preset]
    elif "range" in raw:
        raise ParamError("range", "give either range or since/until, not both")
    if since >= end:
        raise ParamError("until" if until is not None else "since", "the range must end after it starts")
    if end - since > 400 * 86400:
        raise ParamError("since", "ranges longer than 400 days are not supported")
    dimensions = parse_dimensions(q)
    sort = q.get("sort") or "time"
    if sort not in sortable:
        raise ParamError("sort", f"must be one of {', '.join(sortable)}")
    direction = parse_choice("dir", q.get("dir"), ("asc", "desc")) or "desc"
    limit = parse_int("limit", q.get("limit"), default=50, minimum=1, maximum=max(PAGE_SIZES))
    offset = parse_int("offset", q.get("offset"), default=0, minimum=0, maximum=10**9)
    rank = parse_choice("rank", q.get("rank"), ("cost", "requests")) or "cost"
    filters = Filters(
        since=since,
        until=end,
        **dimensions,
        q=parse_text("q", q.get("q"), strip=True),
    )
    return View(
        range=preset,
        since=since,
        until=end,
        filters=filters,
        raw=raw,
        sort=sort,
        descending=direction == "desc",
        limit=limit,
        offset=offset,
        rank=rank,
    )
