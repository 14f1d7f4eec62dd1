"""The API's list/get and the filter shape, as imported before the read side was split: see
:mod:`llm_monitor_mw.store.read` (:mod:`~.read.filters`, :mod:`~.read.calls`)."""

from __future__ import annotations

from .read.calls import API_COLUMNS, DETAIL_COLUMNS, Queries
from .read.filters import Filters, parse_tag

__all__ = ["API_COLUMNS", "DETAIL_COLUMNS", "Filters", "Queries", "parse_tag"]
