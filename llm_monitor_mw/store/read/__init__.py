"""The read side: every question the dashboard, the API, the CLI and alerts ask of ``calls`` and the roll-ups.

* :mod:`.filters` — :class:`Filters`, the one filter shape, and its SQL condition;
* :mod:`.plan` — which parts of a time range the roll-ups answer;
* :mod:`.calls` — rows: pages, exports, attempts, latest errors, the API's list/get;
* :mod:`.metrics` — figures: sums, series, histograms and percentiles, breakdowns, unpriced models;
* :mod:`.traces` — traces (the calls of one inbound request or ``monitor.trace()`` run) and sessions;
* :mod:`.keys` — usage per API key (by its fingerprint).

Reads never write: the roll-ups are kept by the writer, and rows it has not projected yet are read raw.
"""

from __future__ import annotations

from .calls import API_COLUMNS, DETAIL_COLUMNS, SORTABLE, Calls, Queries
from .filters import Filters, parse_tag
from .keys import Keys
from .metrics import Metrics, Report
from .plan import DAY, HOUR, RAW_MAX_SPAN, Segment, bucket_starts, plan
from .traces import TRACE_SORTS, Traces

__all__ = [
    "API_COLUMNS",
    "DAY",
    "DETAIL_COLUMNS",
    "HOUR",
    "RAW_MAX_SPAN",
    "SORTABLE",
    "TRACE_SORTS",
    "Analytics",
    "Filters",
    "Keys",
    "Metrics",
    "Queries",
    "Report",
    "Segment",
    "Traces",
    "bucket_starts",
    "parse_tag",
    "plan",
]


class Analytics(Keys, Calls):
    """Read-only questions of the dashboard: figures (:class:`Metrics`, and usage per API key: :class:`Keys`)
    and rows (:class:`Calls`), one object per store. Construct it ``Analytics(engine)``; ``use_rollups=False`` answers
    everything from raw rows (for comparisons; the figures are the same)."""
