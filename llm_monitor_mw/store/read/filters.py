"""What to select: :class:`Filters`, the one filter shape of the API, the pages, the CLI exports and alerts, and
the one place it becomes SQL (:meth:`Filters.conditions`, for either engine's :class:`Dialect`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..engine.base import Dialect
from ..schema import CALLS

SQLITE = Dialect()
"""The default dialect of :meth:`Filters.conditions` (callers that predate the PostgreSQL engine)."""
TRUE = "1 = 1"
"""The empty condition (``WHERE 1`` is no boolean to PostgreSQL)."""


def parse_tag(text: str) -> tuple[str, str]:
    """``key:value`` as ``(key, value)``, both stripped; raises :class:`ValueError` without a ``:`` or a key.

    The one tag parser: the API and pages (``tag=``), the CLI (``--tag``) and alert scopes (``tag:``) use it.
    """
    key, sep, value = text.partition(":")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ValueError("use key:value, e.g. feature:search")
    return key, value


def escape_like(text: str) -> str:
    """``%text%`` for ``LIKE … ESCAPE '\\'``, the wildcards in ``text`` matched literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True, slots=True)
class Filters:
    """What to select; ``None`` = no constraint. Times are Unix seconds."""

    since: float | None = None
    until: float | None = None
    provider: str | None = None
    model: str | None = None
    ok: bool | None = None
    route: str | None = None
    user: str | None = None
    tag: tuple[str, str] | None = None
    """``(key, value)``: calls whose tags have ``key`` equal to ``value``."""
    q: str | None = None
    """Case-insensitive text search in the error, error type and model."""
    instance: str | None = None
    """The instance (host name + pid group, or ``Monitor(instance=...)``) that recorded the call."""
    tool: str | None = None
    """Calls whose ``tool_names`` (the tools the model asked to call) contain this name."""
    key: str | None = None
    """Calls made with the API key of this fingerprint (``key_fingerprint``, 16 lowercase hex digits)."""
    after_id: int | None = None
    """Only rows with ``id`` above this (the read side's rows not yet in the roll-ups)."""

    @classmethod
    def from_scope(cls, scope: Mapping[str, str], **kw: Any) -> Filters:
        """Filters of an alert rule's or budget's ``scope`` (``provider``, ``route``, ``user``, ``instance``,
        ``tag`` as ``key:value``); ``kw`` sets the other fields (e.g. the time range). ``model`` is left to the
        caller: a scope's model matches the answering or the requested model, which no field here says."""
        tag = parse_tag(scope["tag"]) if scope.get("tag") else None
        fields = {k: scope.get(k) for k in ("provider", "route", "user", "instance")}
        return cls(tag=tag, **fields, **kw)

    @property
    def rollable(self) -> bool:
        """Whether the roll-ups can answer these filters (they keep time, provider and model only; and count
        errors, but keep no other sums of failed calls alone)."""
        return (
            self.ok is None
            and self.route is None
            and self.user is None
            and self.tag is None
            and not self.q
            and self.instance is None
            and self.tool is None
            and self.key is None
            and self.after_id is None
        )

    def where(self, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
        """``" WHERE ..."`` (or ``""``) and its parameters."""
        cond, params = self.conditions(dialect=dialect)
        return ("" if cond == TRUE else f" WHERE {cond}"), params

    def conditions(self, *, time: bool = True, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
        """These filters as one SQL condition over ``calls`` (:data:`TRUE` when empty); ``time=False`` leaves out
        since/until. ``ok`` is a literal, so the partial error index can serve it."""
        clauses: list[str] = []
        params: list[Any] = []
        if time and self.since is not None:
            clauses.append("started_at >= ?")
            params.append(self.since)
        if time and self.until is not None:
            clauses.append("started_at < ?")
            params.append(self.until)
        # Index choice (SQLite has no ANALYZE statistics here, so it guesses): a unary + keeps a term out of index
        # selection. Failed calls are few, so the partial index idx_calls_errors finds them fastest (468 ms -> 0.3 ms
        # at 1M rows); and a provider without a model cannot use (provider, model, started_at) for the time range,
        # so it would scan every row of that provider instead of the range. PostgreSQL plans from statistics (and
        # has no unary + for text).
        errors = self.ok is False
        hint = dialect.name == "sqlite"
        for column, value, plus in (
            ("provider", self.provider, errors or self.model is None),
            ("model", self.model, errors),
        ):
            if value is not None:
                clauses.append(f"{'+' if plus and hint else ''}{column} = ?")
                params.append(value)
        if self.ok is not None:
            clauses.append("ok = 1" if self.ok else "ok = 0")
        for column, value in (
            ("route", self.route),
            ('"user"', self.user),
            ("instance", self.instance),
            ("key_fingerprint", self.key),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.after_id is not None:
            clauses.append(f"{CALLS}.id > ?")  # qualified: SQLite's json_each has an id too
            params.append(self.after_id)
        if self.tag is not None:
            # tag entries, not a JSON path: a path cannot spell every key (a '"' is a syntax error), and it does not
            # match keys stored \u-escaped (json.dumps escapes non-ASCII) at all.
            clauses.append(
                f"tags IS NOT NULL AND EXISTS (SELECT 1 FROM {dialect.tag_entries('tags', 't')}"
                " WHERE t.key = ? AND t.value = ?)"
            )
            params.extend(self.tag)
        if self.tool is not None:
            clauses.append(f"tool_names IS NOT NULL AND {dialect.json_array_contains('tool_names')}")
            params.append(self.tool)
        if self.q:
            pattern = escape_like(self.q)
            clauses.append(f"({dialect.ilike('error')} OR {dialect.ilike('error_type')} OR {dialect.ilike('model')})")
            params.extend([pattern, pattern, pattern])
        return " AND ".join(clauses) or TRUE, params
