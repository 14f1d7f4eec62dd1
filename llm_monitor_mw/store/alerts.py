"""All SQL of alerts and budgets: the metrics rules read from ``calls``, budget spend, and alert state claims.

The tables ``alert_state`` and ``alert_events`` are created by schema migration 5 (store/schema.py), on both
engines. ``alert_state`` holds one row per alert (a rule, a budget, or one value of a per-value budget) with a
``version`` that every change bumps. A change is *claimed* with a conditional ``UPDATE ... WHERE key = ? AND
version = ?`` (or an ``INSERT ... ON CONFLICT (key) DO NOTHING`` of a new row) inside one write transaction, together
with the insert of its event into ``alert_events``: when several processes (on several hosts) evaluate the same
rules, exactly one of them wins each change, and only the winner notifies. On PostgreSQL (READ COMMITTED) this is
race-free too: a second ``UPDATE`` of the same row waits for the first to commit and then re-checks its ``WHERE``
against the new row, where ``version`` no longer matches; a second ``INSERT`` of the same key waits likewise and
then does nothing.

Budget spend (:meth:`AlertStore.spend`) is read from the dashboard's day roll-ups, which the writer keeps up to date
in the same transaction as the rows they summarise, plus the raw rows past the roll-up cursor: a budget's period
starts at a UTC midnight, so whole roll-up days cover it exactly. Scopes the roll-ups cannot answer (a model, or
two conditions at once) are summed from raw rows of the period.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .engine.base import Connection, Engine
from .schema import ALERT_EVENTS as EVENTS
from .schema import ALERT_STATE as STATE
from .schema import CALLS
from .values import plausible

DAY = 86400

STATE_COLUMNS = (
    "id",
    "key",
    "source",
    "name",
    "state",
    "since",
    "clear_since",
    "fired_at",
    "value",
    "threshold",
    "severity",
    "summary",
    "period_start",
    "acked_at",
    "acked_by",
    "version",
    "updated_at",
)
EVENT_COLUMNS = (
    "id",
    "at",
    "key",
    "source",
    "name",
    "event",
    "severity",
    "metric",
    "value",
    "threshold",
    "summary",
    "scope",
    "by",
)
_CHANGEABLE = frozenset(STATE_COLUMNS) - {"id", "key", "source", "version"}
ACTIVE_STATES = ("firing", "warning", "exceeded")
"""States shown as "firing" on the Alerts page (and that can be acknowledged)."""


@dataclass(frozen=True, slots=True)
class StateRow:
    """One row of ``alert_state``."""

    id: int
    key: str
    source: str
    name: str
    state: str
    since: float | None
    clear_since: float | None
    fired_at: float | None
    value: float | None
    threshold: float | None
    severity: str
    summary: str
    period_start: float | None
    acked_at: float | None
    acked_by: str | None
    version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Counts and sums of the calls in one window and scope."""

    requests: int
    errors: int
    rate_limited: int
    cost_usd: float


def _tag(value: str) -> tuple[str, str]:
    key, _, tag_value = value.partition(":")
    return key, tag_value


class AlertStore:
    """Reads metrics and spend from ``calls`` and the roll-ups; reads and claims alert state; records events.

    Args:
        engine: the store's :class:`~llm_monitor_mw.store.engine.base.Engine` (SQLite or PostgreSQL).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.rollups = True
        """Read budget spend from the roll-ups where they can answer (``False``: raw rows only, for comparisons)."""

    def _conn(self) -> Connection:
        return self.engine.connection()

    def ensure(self) -> None:
        """Connect (and migrate) now."""
        self.engine.ensure()

    # ---- scopes -------------------------------------------------------------------------------------------------

    def scope_condition(self, scope: Mapping[str, str]) -> tuple[str, list[Any]]:
        """``scope`` as one SQL condition over ``calls``. A model matches the answering or the requested model; a
        tag ``key:value`` matches calls whose tags have ``key`` equal to ``value``."""
        clauses: list[str] = []
        params: list[Any] = []
        for key, value in scope.items():
            if key == "provider":
                clauses.append("provider = ?")
                params.append(value)
            elif key == "route":
                clauses.append("route = ?")
                params.append(value)
            elif key == "user":
                clauses.append('"user" = ?')
                params.append(value)
            elif key == "model":
                clauses.append("(model = ? OR request_model = ?)")
                params += [value, value]
            elif key == "tag":
                entries = self.dialect.tag_entries(f"{CALLS}.tags", "st")
                clauses.append(
                    f"{CALLS}.tags IS NOT NULL AND EXISTS (SELECT 1 FROM {entries} WHERE st.key = ? AND st.value = ?)"
                )
                params += list(_tag(value))
            else:
                raise ValueError(f"unknown scope key {key!r}")
        return " AND ".join(clauses) or "1 = 1", params

    # ---- rule metrics -------------------------------------------------------------------------------------------

    def window_stats(self, scope: Mapping[str, str], since: float, until: float) -> WindowStats:
        """Calls, failed calls, 429s and spend in ``[since, until)`` within ``scope``."""
        cond, params = self.scope_condition(scope)
        row = (
            self._conn()
            .execute(
                f"SELECT count(*), count(CASE WHEN ok = 0 THEN 1 END), count(CASE WHEN status_code = 429 THEN 1 END),"
                f" {self.dialect.total(plausible('cost_usd'))}"
                f" FROM {CALLS} WHERE started_at >= ? AND started_at < ? AND {cond}",
                [since, until, *params],
            )
            .fetchone()
        )
        return WindowStats(int(row[0]), int(row[1]), int(row[2]), float(row[3]))

    def percentile(
        self, column: str, scope: Mapping[str, str], since: float, until: float, q: float, min_count: int = 1
    ) -> float | None:
        """Nearest-rank ``q`` quantile of ``column`` (``duration_ms`` or ``ttft_ms``) over the calls in the window
        that have it; ``None`` with fewer than ``min_count`` (or no) values."""
        if column not in ("duration_ms", "ttft_ms"):
            raise ValueError(f"no percentile of {column!r}")
        cond, params = self.scope_condition(scope)
        where = f"started_at >= ? AND started_at < ? AND {column} IS NOT NULL AND {cond}"
        with self._snapshot() as conn:
            n = conn.execute(f"SELECT count(*) FROM {CALLS} WHERE {where}", [since, until, *params]).fetchone()[0]
            if not n or n < min_count:
                return None
            rank = max(1, math.ceil(round(q * n, 9)))  # nearest rank; the rounding keeps 0.95 * 20 at 19
            row = conn.execute(
                f"SELECT {column} FROM {CALLS} WHERE {where} ORDER BY {column} LIMIT 1 OFFSET ?",
                [since, until, *params, rank - 1],
            ).fetchone()
        return None if row is None else float(row[0])

    # ---- spend --------------------------------------------------------------------------------------------------

    def change_token(self) -> Any:
        """A value that changes whenever another connection committed (SQLite's ``PRAGMA data_version``), or
        ``None`` when the engine cannot tell cheaply (PostgreSQL): then callers re-read on a clock."""
        if self.engine.name != "sqlite":
            return None
        return self._conn().execute("PRAGMA data_version").fetchone()[0]

    def spend(self, scope: Mapping[str, str], group: str | None, since: float, until: float) -> dict[str | None, float]:
        """Spend of every instance's calls started in ``[since, until)`` within ``scope``, per ``group`` value
        (``"user"``, ``"route"``, ``"provider"``, ``"model"``, ``"tag:<key>"``) or one total under ``None``.

        From the day roll-ups plus the rows past their cursor when ``since`` and ``until`` are UTC midnights and the
        roll-ups hold what the scope asks (see the module docstring); else from raw rows.
        """
        with self._snapshot() as conn:
            rolled = self._rolled_spend(conn, scope, group, since, until) if self.rollups else None
            if rolled is None:
                return self._raw_spend(conn, scope, group, since, until, 0)
            sums, cursor = rolled
            for value, amount in self._raw_spend(conn, scope, group, since, until, cursor).items():
                sums[value] = sums.get(value, 0.0) + amount
            return sums

    def _raw_spend(
        self,
        conn: Connection,
        scope: Mapping[str, str],
        group: str | None,
        since: float,
        until: float,
        after_id: int,
    ) -> dict[str | None, float]:
        cond, params = self.scope_condition(scope)
        source = CALLS
        if group is None:
            expr: str = "NULL"
        elif group.startswith("tag:"):
            source = f"{CALLS}, {self.dialect.tag_entries(f'{CALLS}.tags', 'g')}"
            expr = "g.value"
            cond = f"{CALLS}.tags IS NOT NULL AND g.key = ? AND {cond}"
            params = [group[4:], *params]
        else:
            expr = {
                "user": '"user"',
                "route": "route",
                "provider": "provider",
                "model": "coalesce(request_model, model)",
            }[group]
        # after_id > 0 reads the rows the roll-ups do not hold yet: the id range is the selective part then, so a
        # unary + keeps started_at out of SQLite's index choice
        time_col = "+started_at" if after_id and self.engine.name == "sqlite" else "started_at"
        rows = conn.execute(
            f"SELECT {expr}, {self.dialect.total(plausible('cost_usd'))} FROM {source}"
            f" WHERE {CALLS}.id > ? AND {time_col} >= ? AND {time_col} < ? AND {cond} GROUP BY 1",
            [after_id, since, until, *params],
        ).fetchall()
        return {
            (None if value is None else str(value)): float(total)
            for value, total in rows
            if group is None or value is not None
        }

    def _rolled_spend(
        self, conn: Connection, scope: Mapping[str, str], group: str | None, since: float, until: float
    ) -> tuple[dict[str | None, float], int] | None:
        """Spend from ``rollup_*_day`` and the roll-up cursor, or ``None`` when the roll-ups cannot answer."""
        if since % DAY or until % DAY or not math.isfinite(since) or not math.isfinite(until):
            return None
        fixed = dict(scope)
        where = ["ts >= ?", "ts < ?"]
        params: list[Any] = [int(since), int(until)]
        if group is None and set(fixed) <= {"provider"}:
            table, expr = "rollup_calls_day", "NULL"
            if fixed:
                where.append("provider = ?")
                params.append(fixed["provider"])
        elif group == "provider" and not fixed:
            table, expr = "rollup_calls_day", "provider"
        elif group is None and len(fixed) == 1 and next(iter(fixed)) in ("user", "route", "tag"):
            dim, value = next(iter(fixed.items()))
            table, expr = "rollup_dims_day", "NULL"
            where += ["dim = ?", "value = ?"]
            params += [dim, value]
        elif group in ("user", "route") and not fixed:
            table, expr = "rollup_dims_day", "value"
            where.append("dim = ?")
            params.append(group)
        elif group is not None and group.startswith("tag:") and not fixed:
            prefix = f"{group[4:]}:"
            table, expr = "rollup_dims_day", f"substr(value, {len(prefix) + 1})"
            where += ["dim = 'tag'", f"substr(value, 1, {len(prefix)}) = ?"]
            params.append(prefix)
        else:
            return None
        try:
            cursor_row = conn.execute("SELECT last_id FROM rollup_state WHERE name = 'calls'").fetchone()
            rows = conn.execute(
                f"SELECT {expr}, {self.dialect.total('cost_usd')} FROM {table} WHERE {' AND '.join(where)} GROUP BY 1",
                params,
            ).fetchall()
        except self.engine.errors:
            return None  # no roll-ups in this database: raw rows answer
        sums = {(None if value is None else str(value)): float(total) for value, total in rows if total}
        return sums, int(cursor_row[0]) if cursor_row else 0

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """Several reads that see one state of the database (``engine.snapshot()``; on an engine without it, a
        deferred transaction on SQLite's connection)."""
        snapshot = getattr(self.engine, "snapshot", None)
        if snapshot is not None:
            with snapshot() as conn:
                yield conn
            return
        conn = self._conn()
        if self.engine.name != "sqlite" or getattr(conn, "in_transaction", True):
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # ---- state --------------------------------------------------------------------------------------------------

    def state(self, key: str) -> StateRow | None:
        """The state row of ``key``, if any."""
        row = self._conn().execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM {STATE} WHERE key = ?", [key]).fetchone()
        return None if row is None else StateRow(*row)

    def states(self, prefix: str | None = None) -> list[StateRow]:
        """Every state row (whose key starts with ``prefix``), by key."""
        sql = f"SELECT {', '.join(STATE_COLUMNS)} FROM {STATE}"
        params: list[Any] = []
        if prefix is not None:
            sql += " WHERE substr(key, 1, ?) = ?"
            params = [len(prefix), prefix]
        return [StateRow(*r) for r in self._conn().execute(sql + " ORDER BY key", params).fetchall()]

    def claim(
        self,
        current: StateRow | None,
        key: str,
        source: str,
        changes: Mapping[str, Any],
        event: Any | None,
        now: float,
    ) -> bool:
        """Move ``key`` from ``current`` (``None``: no row yet) to ``changes``, and store ``event``, atomically.

        Returns ``False`` (and changes nothing) when the row is no longer ``current`` — another process, host or
        thread got there first. On success ``event.id`` is set.
        """
        bad = set(changes) - _CHANGEABLE
        if bad:
            raise ValueError(f"cannot change {sorted(bad)}")

        def apply(conn: Connection) -> bool:
            if current is None:
                values = {"state": "ok", "severity": "info", "summary": "", **changes}
                columns = ["key", "source", "version", "updated_at", *values]
                cursor = conn.execute(
                    f"INSERT INTO {STATE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
                    " ON CONFLICT (key) DO NOTHING",
                    [key, source, 1, now, *values.values()],
                )
            else:
                sets = "".join(f"{column} = ?, " for column in changes)
                cursor = conn.execute(
                    f"UPDATE {STATE} SET {sets}version = version + 1, updated_at = ? WHERE key = ? AND version = ?",
                    [*changes.values(), now, key, current.version],
                )
            if cursor.rowcount != 1:
                return False
            if event is not None:
                event.id = _insert_event(conn, event)
            return True

        return self.engine.write(apply)

    def acknowledge(self, state_id: int, by: str | None, now: float) -> dict[str, Any] | None:
        """Acknowledge the active alert ``state_id``; its ``acknowledged`` event (a dict of :data:`EVENT_COLUMNS`),
        or ``None`` if it is not active or was acknowledged already (only the first of several simultaneous
        acknowledgements counts)."""

        def apply(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM {STATE} WHERE id = ?", [state_id]).fetchone()
            if row is None:
                return None
            current = StateRow(*row)
            cursor = conn.execute(
                f"UPDATE {STATE} SET acked_at = ?, acked_by = ?, version = version + 1, updated_at = ?"
                f" WHERE id = ? AND version = ? AND acked_at IS NULL"
                f" AND state IN ({', '.join('?' for _ in ACTIVE_STATES)})",
                [now, by, now, state_id, current.version, *ACTIVE_STATES],
            )
            if cursor.rowcount != 1:
                return None
            last = conn.execute(
                f"SELECT metric, scope FROM {EVENTS} WHERE key = ? ORDER BY id DESC LIMIT 1", [current.key]
            ).fetchone()
            event = {
                "id": None,
                "at": now,
                "key": current.key,
                "source": current.source,
                "name": current.name,
                "event": "acknowledged",
                "severity": current.severity,
                "metric": last[0] if last else "",
                "value": current.value,
                "threshold": current.threshold,
                "summary": current.summary,
                "scope": json.loads(last[1]) if last and last[1] else {},
                "by": by,
            }
            event["id"] = _insert_event(conn, event)
            return event

        return self.engine.write(apply)

    # ---- events -------------------------------------------------------------------------------------------------

    def events(self, limit: int = 100, key: str | None = None) -> list[dict[str, Any]]:
        """The latest events (of ``key``), newest first, as dicts of :data:`EVENT_COLUMNS`."""
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {EVENTS}"
        params: list[Any] = []
        if key is not None:
            sql += " WHERE key = ?"
            params.append(key)
        rows = self._conn().execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
        out = []
        for row in rows:
            data = dict(zip(EVENT_COLUMNS, row, strict=True))
            data["scope"] = json.loads(data["scope"]) if data["scope"] else {}
            out.append(data)
        return out


def _insert_event(conn: Connection, event: Any) -> int:
    """Insert ``event`` (an object with the attributes of :data:`EVENT_COLUMNS`, or such a dict); its id."""
    get = event.get if isinstance(event, dict) else lambda name: getattr(event, name)
    scope = get("scope")
    row = conn.execute(
        f"INSERT INTO {EVENTS} (at, key, source, name, event, severity, metric, value, threshold, summary, scope, by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [
            *(get(name) for name in EVENT_COLUMNS[1:-2]),
            json.dumps(scope, separators=(",", ":")) if scope else None,
            get("by"),
        ],
    ).fetchone()
    return int(row[0])
