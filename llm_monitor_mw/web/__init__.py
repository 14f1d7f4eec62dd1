"""Web: the mountable Starlette app. Reads only through the :class:`~llm_monitor_mw.store.Store` it is given."""
