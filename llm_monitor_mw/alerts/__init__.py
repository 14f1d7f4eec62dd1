"""Alerts and budgets: rules over the recorded calls, spend limits, notifications, and a hard limit in the transport.

Use it through ``monitor.alerts`` (an :class:`AlertManager`) and ``monitor.budget_exceeded(...)``.
"""

from .budgets import BudgetExceeded
from .channels import Channel, EmailChannel, SlackChannel, WebhookChannel
from .events import AlertEvent
from .manager import AlertManager
from .rules import METRICS, Budget, Rule

__all__ = [
    "METRICS",
    "AlertEvent",
    "AlertManager",
    "Budget",
    "BudgetExceeded",
    "Channel",
    "EmailChannel",
    "Rule",
    "SlackChannel",
    "WebhookChannel",
]
