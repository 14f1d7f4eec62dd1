"""`AlertEvent`: one state change of an alert or budget, as stored and as sent to the channels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

FIRED, RESOLVED, ACKNOWLEDGED, WARNING, EXCEEDED = "fired", "resolved", "acknowledged", "warning", "exceeded"
EVENTS = (FIRED, RESOLVED, ACKNOWLEDGED, WARNING, EXCEEDED)
"""Rules fire and resolve; budgets warn, are exceeded and resolve when a new period starts; both are acknowledged."""


@dataclass(slots=True)
class AlertEvent:
    """A state change. ``value`` is the metric (or the spend, for budgets) when it happened."""

    at: float
    """Unix seconds."""
    key: str
    """The alert's id: ``rule:<name>``, ``budget:<name>`` or ``budget:<name>:<value>`` for per-value budgets."""
    source: str
    """``rule`` or ``budget``."""
    name: str
    event: str
    """One of :data:`EVENTS`."""
    severity: str
    metric: str
    """The rule's metric, or ``cost_usd`` for budgets."""
    value: float | None
    threshold: float | None
    summary: str
    """What is watched, e.g. ``error_rate > 0.05 over 5m (provider=openai)`` or ``$50 per day (user=alice)``."""
    scope: dict[str, str] = field(default_factory=dict)
    by: str | None = None
    """Who acknowledged (``acknowledged`` events)."""
    id: int | None = None
    """Row id in ``alert_events`` once stored."""

    @property
    def title(self) -> str:
        """One line for chat and e-mail subjects: ``[critical] FIRED high error rate``."""
        return f"[{self.severity}] {self.event.upper()} {self.name}"

    @property
    def text(self) -> str:
        """The title plus the figures, as plain text."""
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        figures = ""
        if self.value is not None:
            figures = f": {self.metric} = {_fmt(self.value)}"
            if self.threshold is not None:
                figures += f" (threshold {_fmt(self.threshold)})"
        by = f" by {self.by}" if self.by else ""
        return f"{self.title}{by}{figures} — {self.summary} at {when}"

    def to_dict(self) -> dict[str, Any]:
        """Every field plus ``title`` and ``text``, JSON-ready."""
        return {**asdict(self), "title": self.title, "text": self.text}


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
