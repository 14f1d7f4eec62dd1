"""Shared by the examples: where the LLM is (the bundled fake server unless OPENAI_BASE_URL is set)."""

from __future__ import annotations

import atexit
import os

from llm_monitor_mw.fake import FakeLLMServer


def llm_base_url() -> str:
    """``OPENAI_BASE_URL`` if set, else a fake LLM server started for this process."""
    if os.environ.get("OPENAI_BASE_URL"):
        return os.environ["OPENAI_BASE_URL"]
    server = FakeLLMServer().start()
    atexit.register(server.stop)
    return server.base_url + "/v1"


def api_key() -> str:
    return os.environ.get("OPENAI_API_KEY", "sk-example-not-a-real-key")


def password() -> str:
    return os.environ.get("MONITOR_PASSWORD", "admin")
