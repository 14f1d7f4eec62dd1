"""Web: the mountable Starlette app. Reads only through `store.queries`."""
