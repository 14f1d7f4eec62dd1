"""``python -m llm_monitor_mw.cli``."""

from .main import main

raise SystemExit(main())
