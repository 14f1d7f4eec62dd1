"""The demo: a small app whose users and workers call four providers (OpenAI, Anthropic, Gemini, Ollama — each a
bundled fake LLM server on 127.0.0.1, called with the real SDKs), recorded by a :class:`~llm_monitor_mw.Monitor`
whose dashboard is mounted at ``/monitoring``. No API key, no network beyond 127.0.0.1.

    python -m llm_monitor_mw.demo [--port 8000] [--db llm_monitor_demo.db]

On its first start (an empty database) it seeds a week of history, then keeps making live calls through the
attribution middleware, with alert rules and budgets that fire. Modules: :mod:`.providers` (fake servers,
clients, names), :mod:`.calls` (one call), :mod:`.scenarios` (what users and workers do), :mod:`.traffic` (when),
:mod:`.history` (seeding), :mod:`.listeners` (backdating, private content), :mod:`.app` (the host app),
:mod:`.alerting` (rules and budgets), :mod:`.main` (the command).
"""

from .app import build_app
from .main import DEFAULT_DB, main, open_demo

__all__ = ["DEFAULT_DB", "build_app", "main", "open_demo"]
