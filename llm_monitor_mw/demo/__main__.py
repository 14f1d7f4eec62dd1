"""``python -m llm_monitor_mw.demo``."""

from . import main

main()
