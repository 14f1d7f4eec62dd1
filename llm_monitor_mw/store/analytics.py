"""The dashboard's read side, as it was imported before it was split by job: see :mod:`llm_monitor_mw.store.read`.

Every name the pages, the API, the CLI, alerts and tests imported from here still is here: :class:`Analytics`,
:class:`Report`, :data:`SORTABLE`, :data:`DIMENSIONS`, :func:`plan`, :func:`bucket_starts`, :func:`percentile`.
Reads never write: the roll-ups are maintained by the writer (``store/projections.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from .engine.base import Engine
from .projections import catch_up
from .read import Analytics, Report
from .read.aggregates import (
    DIMENSIONS,
    HIST_PER_DOUBLING,
    percentile,
)
from .read.calls import SORTABLE
from .read.filters import Filters
from .read.plan import DAY, HOUR, RAW_MAX_SPAN, Segment, bucket_starts, plan

__all__ = [
    "DAY",
    "DIMENSIONS",
    "HIST_PER_DOUBLING",
    "HOUR",
    "RAW_MAX_SPAN",
    "SORTABLE",
    "Analytics",
    "Report",
    "Segment",
    "bucket_starts",
    "percentile",
    "plan",
    "where",
]

logger = logging.getLogger("llm_monitor_mw")


def where(filters: Filters, *, time: bool = True) -> tuple[str, list[Any]]:
    """``filters`` as one SQL condition over ``calls`` in SQLite's dialect (see :meth:`Filters.conditions`)."""
    return filters.conditions(time=time)


def ensure(engine: Engine) -> None:
    """Project every row past the cursor now, in short transactions (for tools that inserted rows themselves;
    the writer projects its own rows, and catches up a backlog when idle). See :func:`.projections.catch_up`."""
    catch_up(engine)
