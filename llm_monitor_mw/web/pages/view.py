"""What a dashboard page shows: the time range, filters and list state parsed from (and turned back into) the
query string."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from starlette.requests import Request

from ...store.read import SORTABLE, Filters
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
        return any(v is not None for v in (f.provider, f.model, f.ok, f.route, f.user, f.instance, f.tag)) or bool(f.q)

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


QUERY_KEYS = ("range", "since", "until", "provider", "model", "status", "route", "user", "instance", "tag", "q")
MAX_PARAM = 400
"""Longest value of any known parameter (the text filters have tighter limits of their own)."""
LIST_KEYS = ("sort", "dir", "limit", "offset", "rank")


def parse_view(request: Request, *, now: float | None = None) -> View:
    """Parse the query string into a :class:`View`; raises :class:`ParamError` naming a bad parameter."""
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
    if sort not in SORTABLE:
        raise ParamError("sort", f"must be one of {', '.join(SORTABLE)}")
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
