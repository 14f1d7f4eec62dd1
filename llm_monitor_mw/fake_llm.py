"""The bundled fake LLM server, kept importable under its old name: it lives in :mod:`llm_monitor_mw.fake` (one module
per provider family). ``from llm_monitor_mw.fake_llm import FakeLLMServer`` and ``python -m llm_monitor_mw.fake_llm``
keep working."""

from __future__ import annotations

from . import fake
from .fake import *  # noqa: F403 - the old module's public names, exactly the package's
from .fake import main as _main

__all__ = fake.__all__


def main(argv: list[str] | None = None) -> int:
    """Serve the fake LLM until interrupted: ``python -m llm_monitor_mw.fake_llm [--host H] [--port P | PORT]``."""
    return _main(argv, prog="python -m llm_monitor_mw.fake_llm")


if __name__ == "__main__":
    raise SystemExit(main())
