"""The ``llm-monitor`` command: ``serve``, ``demo``, ``prune``, ``backup``, ``export``, ``check``.

Installed as a console script with the package; also ``python -m llm_monitor_mw.cli``.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
