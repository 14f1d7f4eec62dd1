"""llm-monitor-mw: see what your Python app's LLM calls do — capture, attribute, show."""

from ._version import __version__
from .alerts import AlertManager, Budget, BudgetExceeded, EmailChannel, Rule, SlackChannel, WebhookChannel
from .monitor import Monitor
from .record import CallRecord
from .web.auth import BasicAuth, Constraint

__all__ = [
    "AlertManager",
    "BasicAuth",
    "Budget",
    "BudgetExceeded",
    "CallRecord",
    "Constraint",
    "EmailChannel",
    "Monitor",
    "Rule",
    "SlackChannel",
    "WebhookChannel",
    "__version__",
]
