"""The demo's alert rules and budgets, set so that some fire while it runs (and some stay quiet).

* ``rate limited`` fires: live traffic (and the last minutes of the seeded week) keep getting 429s.
* ``high error rate`` fires at first too (the seeded week ends with a burst of failures) and resolves once the
  burst has left its window; ``slow answers`` stays OK unless things get worse than usual.
* ``daily spend`` is exceeded today at any hour (the backfill job's spike alone costs about $1.70); ``per user``
  shows each user's spend of the day, the heaviest ones over it by the afternoon (UTC); ``monthly spend`` shows
  progress.
"""

from __future__ import annotations

from typing import Any

from ..alerts import Budget, Rule

RULES = (
    Rule("rate limited", "rate_limited", 3, window="10m", severity="warning", cooldown="5m"),
    Rule("high error rate", "error_rate", 0.2, window="15m", min_requests=20, severity="critical"),
    Rule("slow answers", "latency_p95_ms", 10_000, window="10m", min_requests=10),
)
BUDGETS = (
    Budget("daily spend", 1.5, period="day", warn_at=0.8),
    Budget("per user", 0.05, period="day", scope={"user": "*"}, warn_at=0.8),
    Budget("monthly spend", 150.0, period="month", warn_at=0.8),
)


def configure(monitor: Any, *, interval: float = 10.0) -> None:
    """Add the rules and budgets to ``monitor.alerts`` and start evaluating every ``interval`` seconds."""
    alerts = monitor.alerts
    for rule in RULES:
        alerts.add_rule(rule)
    for budget in BUDGETS:
        alerts.add_budget(budget)
    alerts.start(interval=interval)
