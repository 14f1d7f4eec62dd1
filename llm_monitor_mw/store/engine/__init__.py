"""Storage engines: a SQLite file (default) or a PostgreSQL database, behind one :class:`Engine` interface."""

from __future__ import annotations

import os

from .base import Connection, Cursor, Dialect, Engine, PostgresDialect

__all__ = ["Connection", "Cursor", "Dialect", "Engine", "PostgresDialect", "is_postgres_url", "open_engine"]


def is_postgres_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a PostgreSQL database (``postgresql://…`` or ``postgres://…``)."""
    text = os.fspath(target)
    return isinstance(text, str) and text.lower().startswith(("postgresql://", "postgres://"))


def open_engine(target: str | os.PathLike[str]) -> Engine:
    """The engine for ``target``: a PostgreSQL URL, else a SQLite file path (created on first use)."""
    if is_postgres_url(target):
        from .postgres import PostgresEngine

        return PostgresEngine(os.fspath(target))
    from ..database import Database

    return Database(target)
