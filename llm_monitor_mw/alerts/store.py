"""The alerts' SQL lives in :mod:`llm_monitor_mw.store.alerts`; these names are re-exported for older imports."""

from ..store.alerts import ACTIVE_STATES, AlertStore, StateRow, WindowStats

__all__ = ["ACTIVE_STATES", "AlertStore", "StateRow", "WindowStats"]
