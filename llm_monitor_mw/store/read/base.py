"""Plumbing of the read side: one consistent snapshot per question, the projection cursor, SQLite math functions.

Reads never write. The roll-ups are maintained by the writer (``store/projections.py``) up to a cursor
(``rollup_state.last_id`` of ``'calls'``); rows above it are not in the roll-ups yet, so a question answered from
roll-ups adds those rows from ``calls`` itself. The cursor and everything a question reads come from one snapshot
(:meth:`Reader.reading`), so no row is counted twice or missed while the writer commits.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ..engine.base import Connection, Engine
from ..schema import CALLS
from .aggregates import sqlite_math

F = TypeVar("F", bound=Callable[..., Any])


def execute(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """All rows of ``sql``."""
    return conn.execute(sql, list(params)).fetchall()


@contextlib.contextmanager
def _begun(engine: Engine) -> Iterator[Connection]:
    """A read transaction on this thread's connection, for engines without ``snapshot()``."""
    conn = engine.connection()
    if not isinstance(conn, sqlite3.Connection) or conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def snapshot(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """``engine.snapshot()`` (one read-only transaction), or a deferred ``BEGIN`` where the engine has none."""
    snap = getattr(engine, "snapshot", None)
    return snap() if snap is not None else _begun(engine)


class _State(threading.local):
    conn: Connection | None = None
    cursor: int | None = None
    pending: bool | None = None


def snapshotted(method: F) -> F:
    """Run ``method`` inside :meth:`Reader.reading`, so every statement it runs sees one snapshot."""

    @functools.wraps(method)
    def wrapper(self: Reader, *args: Any, **kwargs: Any) -> Any:
        with self.reading():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Reader:
    """Read-only access to an engine. ``use_rollups=False`` answers everything from raw rows (for comparisons;
    the figures are the same)."""

    def __init__(self, engine: Engine, *, use_rollups: bool = True) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._rolled = use_rollups
        self._state = _State()

    @property
    def db(self) -> Engine:
        """The engine (its name before there were two)."""
        return self.engine

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """This thread's snapshot connection: opened here, or the one an enclosing read already holds."""
        state = self._state
        if state.conn is not None:
            yield state.conn
            return
        with snapshot(self.engine) as conn:
            sqlite_math(conn)  # log2/floor where the SQLite library lacks them (a no-op elsewhere)
            state.conn, state.cursor, state.pending = conn, None, None
            try:
                yield conn
            finally:
                state.conn, state.cursor, state.pending = None, None, None

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.reading() as conn:
            return execute(conn, sql, params)

    def cursor(self) -> int:
        """The last ``calls.id`` the roll-ups hold (0: none), as of this read's snapshot."""
        with self.reading():
            state = self._state
            if state.cursor is None:
                rows = self._all("SELECT last_id FROM rollup_state WHERE name = 'calls'")
                state.cursor = int(rows[0][0]) if rows and rows[0][0] is not None else 0
            return state.cursor

    def pending(self) -> bool:
        """Whether ``calls`` has rows the roll-ups do not hold yet (one probe of the primary key)."""
        with self.reading():
            state = self._state
            if state.pending is None:
                # ORDER BY: PostgreSQL's generic plan for "id > $1 LIMIT 1" is a sequential scan (it expects a third
                # of the rows to match), which reads the whole table when none does: ~150 ms a read at 1M rows
                sql = f"SELECT id FROM {CALLS} WHERE id > ? ORDER BY id LIMIT 1"
                state.pending = bool(self._all(sql, [self.cursor()]))
            return state.pending
