"""The bundled fake LLM server, kept importable under its old name: it lives in :mod:`llm_monitor_mw.fake` (one module
per provider family). ``from llm_monitor_mw.fake_llm import FakeLLMServer`` and ``python -m llm_monitor_mw.fake_llm``
keep working."""

from __future__ import annotations

from .fake import (
    AZURE_CHAT_MODEL,
    AZURE_EMBEDDING_MODEL,
    BASE_PROMPT_TOKENS,
    BIG_BODY_CHARS,
    CACHED_TOKENS,
    DEFAULT_CHUNKS,
    DEFAULT_MODEL,
    EMBEDDING_DIM,
    REASONING_TOKENS,
    REPLY_TEXT,
    REPLY_WORDS,
    FakeLLMServer,
    SimulatedDisconnect,
    create_app,
    reply_pieces,
)
from .fake import main as _main

__all__ = [
    "AZURE_CHAT_MODEL",
    "AZURE_EMBEDDING_MODEL",
    "BASE_PROMPT_TOKENS",
    "BIG_BODY_CHARS",
    "CACHED_TOKENS",
    "DEFAULT_CHUNKS",
    "DEFAULT_MODEL",
    "EMBEDDING_DIM",
    "REASONING_TOKENS",
    "REPLY_TEXT",
    "REPLY_WORDS",
    "FakeLLMServer",
    "SimulatedDisconnect",
    "create_app",
    "main",
    "reply_pieces",
]


def main(argv: list[str] | None = None) -> int:
    """Serve the fake LLM until interrupted: ``python -m llm_monitor_mw.fake_llm [--host H] [--port P | PORT]``."""
    return _main(argv, prog="python -m llm_monitor_mw.fake_llm")


if __name__ == "__main__":
    raise SystemExit(main())
