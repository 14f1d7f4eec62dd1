"""llm-monitor-mw: see what your Python app's LLM calls do — capture, attribute, show."""

from ._version import __version__
from .monitor import Monitor
from .record import CallRecord
from .web.auth import BasicAuth, Constraint

__all__ = ["BasicAuth", "CallRecord", "Constraint", "Monitor", "__version__"]
