"""What every storage engine offers the rest of ``store/``: connections, transactions and a SQL dialect.

SQL in ``store/`` is written once, with ``?`` placeholders, and with the few constructs that differ between
SQLite and PostgreSQL taken from :class:`Dialect` (``total()``, ``log2``, two-argument ``max``, tag entries, column
types). The PostgreSQL connection translates ``?`` to psycopg's ``%s``; everything else is common SQL:
``ON CONFLICT … DO UPDATE``, ``coalesce``, ``CASE``, ``count(CASE …)``, partial indexes, ``NULLS LAST``.

Rules that keep SQL portable (both engines run the same contract suite):
- conditions are booleans: ``WHERE TRUE``/``1 = 1``, never ``WHERE 1``; ``ok = 0`` is fine (``ok`` is an integer);
- time buckets use :meth:`Dialect.bucket` (``CAST(x / 3600 AS INTEGER)`` truncates in SQLite, rounds in PostgreSQL);
- ``"user"`` is always quoted (a reserved word in PostgreSQL);
- case-insensitive matching is :meth:`Dialect.ilike`; NULL ordering is spelled out (``NULLS LAST``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor ``store/`` uses."""

    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection as ``store/`` uses it: ``?`` placeholders on both engines."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...


class Dialect:
    """SQL fragments that differ between engines. This base class is SQLite's."""

    name = "sqlite"
    integer = "INTEGER"
    """Column type of integers (64-bit on both engines)."""
    real = "REAL"
    """Column type of floats."""
    text = "TEXT"
    primary_key = "INTEGER PRIMARY KEY"
    """The ``id`` column of ``calls``: a growing integer the database assigns."""
    without_rowid = " WITHOUT ROWID"
    """Suffix of ``CREATE TABLE`` for tables keyed by their primary key only (nothing on PostgreSQL)."""
    functions: tuple[str, ...] = ()
    """DDL of the SQL functions the dialect's fragments call (created by migration 5)."""
    array_functions: tuple[str, ...] = ()
    """DDL of the functions :meth:`json_array_contains` calls (created by migration 7)."""

    def total(self, expr: str) -> str:
        """A sum that never raises and is ``0.0`` over no rows (SQLite's ``total()``)."""
        return f"total({expr})"

    def log2(self, expr: str) -> str:
        return f"log2({expr})"

    def greatest(self, a: str, b: str) -> str:
        """The larger of two values (SQLite's scalar two-argument ``max``)."""
        return f"max({a}, {b})"

    def least(self, a: str, b: str) -> str:
        return f"min({a}, {b})"

    def bucket(self, expr: str, step: int) -> str:
        """``floor(expr / step) * step`` as an integer: the start of the ``step``-second bucket holding ``expr``."""
        return f"(CAST(floor(({expr}) / {int(step)}) AS INTEGER) * {int(step)})"

    def tag_entries(self, column: str, alias: str = "j") -> str:
        """A ``FROM``-list item giving one row per tag of ``column`` (a JSON object as text) with ``{alias}.key``
        and ``{alias}.value`` (text); a value that is not a JSON object gives no rows, never an error."""
        return (
            f"json_each(CASE WHEN json_valid({column}) THEN CASE json_type({column}) WHEN 'object' THEN {column} END"
            f" END) AS {alias}"
        )

    def ilike(self, expr: str, placeholder: str = "?") -> str:
        """Case-insensitive ``LIKE`` (SQLite's ``LIKE`` already is, for ASCII)."""
        return f"{expr} LIKE {placeholder} ESCAPE '\\'"

    def json_array_contains(self, column: str, placeholder: str = "?") -> str:
        """Whether ``column`` (a JSON array as text) holds the string ``placeholder``; false, never an error, for
        a value that is not a JSON array."""
        array = f"CASE WHEN json_valid({column}) THEN CASE json_type({column}) WHEN 'array' THEN {column} END END"
        return f"EXISTS (SELECT 1 FROM json_each({array}) AS je WHERE je.type = 'text' AND je.value = {placeholder})"

    def tag_value(self, column: str, key: str) -> str:
        """The value (as text) of tag ``key`` (a literal: letters, digits and ``_`` only) in ``column`` (a JSON
        object as text); NULL when absent or when ``column`` is not a JSON object."""
        if not key.replace("_", "").isalnum() or not key.isascii():
            raise ValueError(f"not a plain tag key: {key!r}")
        return (
            f"CASE WHEN json_valid({column}) THEN CASE json_type({column}) WHEN 'object' THEN"
            f" CAST(json_extract({column}, '$.{key}') AS TEXT) END END"
        )

    def collate_c(self, expr: str) -> str:
        """``expr`` compared by code point (SQLite's default BINARY collation already is)."""
        return expr


class PostgresDialect(Dialect):
    name = "postgresql"
    integer = "BIGINT"
    real = "DOUBLE PRECISION"
    primary_key = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    without_rowid = ""
    functions = (
        # PostgreSQL 15 has no pg_input_is_valid(): a cast that fails must give NULL, not fail the whole read
        # (one foreign row of tags "{oops" would otherwise break every tag query and the writer's projection).
        # PARALLEL UNSAFE: the EXCEPTION block is a subtransaction, which a parallel worker cannot start.
        """CREATE OR REPLACE FUNCTION llm_monitor_jsonb(value TEXT) RETURNS JSONB
           LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE AS $$
           BEGIN
             IF value IS NULL OR left(ltrim(value), 1) <> '{' THEN RETURN NULL; END IF;
             RETURN CAST(value AS JSONB);
           EXCEPTION WHEN others THEN RETURN NULL;
           END $$""",
    )
    array_functions = (
        # as llm_monitor_jsonb, for JSON arrays (tool names); created by migration 7
        """CREATE OR REPLACE FUNCTION llm_monitor_jsonb_array(value TEXT) RETURNS JSONB
           LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE AS $$
           BEGIN
             IF value IS NULL OR left(ltrim(value), 1) <> '[' THEN RETURN NULL; END IF;
             RETURN CAST(value AS JSONB);
           EXCEPTION WHEN others THEN RETURN NULL;
           END $$""",
    )

    def total(self, expr: str) -> str:
        return f"coalesce(sum(CAST({expr} AS DOUBLE PRECISION)), 0.0)"

    def log2(self, expr: str) -> str:
        # float ln, not numeric log(2, x): ~1 µs a row instead of ~40 (exact at powers of two, like C's log2)
        return f"(ln(CAST({expr} AS DOUBLE PRECISION)) / ln(CAST(2 AS DOUBLE PRECISION)))"

    def greatest(self, a: str, b: str) -> str:
        return f"greatest({a}, {b})"

    def least(self, a: str, b: str) -> str:
        return f"least({a}, {b})"

    def bucket(self, expr: str, step: int) -> str:
        return f"(CAST(floor(({expr}) / {int(step)}) AS BIGINT) * {int(step)})"

    def tag_entries(self, column: str, alias: str = "j") -> str:
        # The writer stores tags as a JSON object or NULL; anything else a foreign writer left is no tags.
        return f"LATERAL jsonb_each_text(llm_monitor_jsonb({column})) AS {alias}"

    def ilike(self, expr: str, placeholder: str = "?") -> str:
        return f"{expr} ILIKE {placeholder} ESCAPE '\\'"

    def json_array_contains(self, column: str, placeholder: str = "?") -> str:
        # containment of a one-string array: matches string elements only, as SQLite's je.type = 'text'
        return f"llm_monitor_jsonb_array({column}) @> jsonb_build_array(CAST({placeholder} AS TEXT))"

    def tag_value(self, column: str, key: str) -> str:
        super().tag_value(column, key)  # the same check of the key
        return f"(llm_monitor_jsonb({column}) ->> '{key}')"

    def collate_c(self, expr: str) -> str:
        return f'{expr} COLLATE "C"'


class Engine(Protocol):
    """A store's database: SQLite file or PostgreSQL server. One object per ``Monitor``, shared by its threads."""

    name: str
    """``"sqlite"`` or ``"postgresql"``."""
    dialect: Dialect
    location: str
    """Where the data is, for messages and ``/health``: the file path, or the DSN without its password."""
    errors: tuple[type[BaseException], ...]
    """The engine's database error classes (catch these, never bare ``Exception``, around SQL)."""

    def connection(self) -> Connection:
        """This thread's connection (opened, and the schema migrated, on first use), in autocommit mode: use it
        for reads; writes go through :meth:`write`."""
        ...

    def write(
        self,
        fn: Callable[[Connection], T],
        *,
        attempts: int = 50,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``fn(conn)`` in one write transaction; retry while the database is busy or the connection was lost
        (at most ``attempts`` times, not past ``deadline``, a :func:`time.monotonic` value, and not once ``stop()``
        is true: a closing writer gives up a write that is still retrying)."""
        ...

    def iterate(self, sql: str, params: Sequence[Any] = (), *, size: int = 1000) -> Iterator[tuple[Any, ...]]:
        """Stream the rows of a long read (exports) on a connection of its own, ``size`` rows at a time."""
        ...

    def snapshot(self) -> contextlib.AbstractContextManager[Connection]:
        """A context manager yielding this thread's connection inside a read-only transaction: every statement in
        the block sees one consistent snapshot (SQLite: deferred ``BEGIN``; PostgreSQL: ``REPEATABLE READ READ
        ONLY``). Nested use joins the outer snapshot. Never write inside it."""
        ...

    def ensure(self) -> None:
        """Connect and migrate now (raises on an unusable path/DSN or a schema newer than this package)."""
        ...

    def close(self) -> None:
        """Close this thread's connection."""
        ...
