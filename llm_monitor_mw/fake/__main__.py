"""``python -m llm_monitor_mw.fake``: serve the fake LLM until interrupted."""

from .server import main

raise SystemExit(main())
