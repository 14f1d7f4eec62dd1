"""View-model pieces several pages use: KPI cards, titled charts, shares of a total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import format as fm


@dataclass(frozen=True, slots=True)
class Kpi:
    """One KPI card: the figure, and its change against the previous period."""

    label: str
    value: str
    change: float | None
    """Relative change (0.12 = +12 %); ``None`` when there is nothing to compare with."""
    worse_when: str | None
    """``up``/``down``: which direction is bad (colours the change); ``None``: neutral."""
    hint: str = ""

    @property
    def tone(self) -> str:
        if self.change is None or self.worse_when is None or abs(self.change) < 0.005:
            return "neutral"
        bad = self.change > 0 if self.worse_when == "up" else self.change < 0
        return "bad" if bad else "good"

    @property
    def change_text(self) -> str:
        if self.change is None:
            return "no previous data"
        arrow = "▲" if self.change > 0 else ("▼" if self.change < 0 else "")
        return f"{arrow} {abs(self.change) * 100:.0f}%" if abs(self.change) < 10 else f"{arrow} {self.change + 1:,.0f}x"


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change from ``previous`` to ``current`` (``None`` when either is unknown or previous is 0)."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / previous


@dataclass(frozen=True, slots=True)
class Chart:
    """A titled chart: its SVG and legend."""

    title: str
    svg: Any
    legend: Any = ""
    note: str = ""


def pct_axis(value: float) -> str:
    return fm.percent(value, 0 if value >= 0.1 or value == 0 else 1)


def unpriced_models(rows: list[dict[str, Any]], limit: int = 3) -> str:
    """``gpt-x (12), my-model (3) and 2 more``: the models of calls that have tokens but no price, most first."""
    named = [f"{r['model'] or 'unknown model'} ({fm.integer(r['calls'])})" for r in rows[:limit]]
    rest = len(rows) - limit
    return ", ".join(named) + (f" and {rest} more" if rest > 0 else "")


def unpriced_calls(rows: list[dict[str, Any]]) -> int:
    """How many calls have tokens but no price."""
    return sum(int(r["calls"]) for r in rows)


def with_share(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    total = sum(r[key] or 0 for r in rows) or 0
    return [{**r, "share": (r[key] or 0) / total if total else None} for r in rows]
