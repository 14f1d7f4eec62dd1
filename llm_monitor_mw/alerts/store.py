"""All SQL of alerts and budgets: their two tables, the metrics they read from ``calls``, and state claims.

``alert_state`` holds one row per alert (a rule, a budget, or one value of a per-value budget) with a ``version``
that every change bumps. A change is *claimed* with a conditional ``UPDATE ... WHERE version = ?`` (or an
``INSERT`` of a new row) inside a ``BEGIN IMMEDIATE`` transaction, together with the insert of its event into
``alert_events``: when several processes evaluate the same rules, exactly one of them wins each change, and only the
winner notifies. Tables are created with ``CREATE TABLE IF NOT EXISTS`` on first use.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..store.database import Database
from ..store.queries import Filters
from ..store.schema import CALLS
from ..store.values import plausible
from .events import AlertEvent

STATE = "alert_state"
EVENTS = "alert_events"

DDL = (
    f"""CREATE TABLE IF NOT EXISTS {STATE} (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        since REAL,
        clear_since REAL,
        fired_at REAL,
        value REAL,
        threshold REAL,
        severity TEXT NOT NULL,
        summary TEXT NOT NULL,
        period_start REAL,
        acked_at REAL,
        acked_by TEXT,
        version INTEGER NOT NULL,
        updated_at REAL NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        key TEXT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        event TEXT NOT NULL,
        severity TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        threshold REAL,
        summary TEXT NOT NULL,
        scope TEXT,
        by TEXT)""",
    f"CREATE INDEX IF NOT EXISTS idx_alert_events_at ON {EVENTS}(at)",
)

_STATE_COLUMNS = (
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
_CHANGEABLE = frozenset(_STATE_COLUMNS) - {"id", "key", "source", "version"}
_EVENT_COLUMNS = (
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


def scope_condition(scope: Mapping[str, str]) -> tuple[str, list[Any]]:
    """``scope`` as one SQL condition over ``calls``. A model matches the answering or the requested model."""
    tag = None
    if "tag" in scope:
        key, _, value = scope["tag"].partition(":")
        tag = (key, value)
    filters = Filters(provider=scope.get("provider"), route=scope.get("route"), user=scope.get("user"), tag=tag)
    cond, params = filters.conditions(time=False)
    if "model" in scope:
        cond = f"{cond} AND (model = ? OR request_model = ?)"
        params += [scope["model"], scope["model"]]
    return cond, params


def group_expression(group: str | None) -> tuple[str, list[Any]]:
    """The SQL value a per-value budget groups by (see :attr:`Budget.group`); ``NULL`` for one total."""
    if group is None:
        return "NULL", []
    if group.startswith("tag:"):
        return "json_extract(tags, ?)", [f'$."{group[4:]}"']
    return {
        "user": '"user"',
        "route": "route",
        "provider": "provider",
        "model": "coalesce(request_model, model)",
    }[group], []


class AlertStore:
    """Reads metrics and spend from ``calls``; reads and claims alert state; records events."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = self.db.connect().conn
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.db.write(lambda c: [c.execute(sql) for sql in DDL])
                    self._ready = True
        return conn

    def ensure(self) -> None:
        """Create the tables now (they are also created on first use)."""
        self._conn()

    # ---- metrics ------------------------------------------------------------------------------------------------

    def window_stats(self, scope: Mapping[str, str], since: float, until: float) -> WindowStats:
        """Calls, failed calls, 429s and spend in ``[since, until)`` within ``scope``."""
        cond, params = scope_condition(scope)
        row = (
            self._conn()
            .execute(
                f"SELECT count(*), count(CASE WHEN ok = 0 THEN 1 END), count(CASE WHEN status_code = 429 THEN 1 END),"
                f" total({plausible('cost_usd')})"
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
        cond, params = scope_condition(scope)
        where = f"started_at >= ? AND started_at < ? AND {column} IS NOT NULL AND {cond}"
        conn = self._conn()
        n = conn.execute(f"SELECT count(*) FROM {CALLS} WHERE {where}", [since, until, *params]).fetchone()[0]
        if not n or n < min_count:
            return None
        rank = max(1, math.ceil(round(q * n, 9)))  # nearest rank; the rounding keeps 0.95 * 20 at 19
        row = conn.execute(
            f"SELECT {column} FROM {CALLS} WHERE {where} ORDER BY {column} LIMIT 1 OFFSET ?",
            [since, until, *params, rank - 1],
        ).fetchone()
        return None if row is None else float(row[0])

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on this thread's connection: it changes when another connection commits."""
        return self._conn().execute("PRAGMA data_version").fetchone()[0]

    def max_call_id(self) -> int:
        """The newest row id of ``calls`` (0 when empty): every row up to it is committed."""
        return self._conn().execute(f"SELECT coalesce(max(id), 0) FROM {CALLS}").fetchone()[0]

    def spend(
        self,
        scope: Mapping[str, str],
        group: str | None,
        since: float,
        until: float,
        after_id: int,
        upto_id: int,
    ) -> dict[str | None, float]:
        """Spend of the calls with ``after_id < id <= upto_id`` started in ``[since, until)`` within ``scope``,
        per ``group`` value (or one total under ``None``). Incremental reads (``after_id`` > 0) walk the new ids only.
        """
        cond, params = scope_condition(scope)
        expr, expr_params = group_expression(group)
        # a unary + keeps started_at out of index selection, so an incremental read uses the rowid range
        time_col = "+started_at" if after_id else "started_at"
        rows = (
            self._conn()
            .execute(
                f"SELECT {expr}, total({plausible('cost_usd')}) FROM {CALLS}"
                f" WHERE {time_col} >= ? AND {time_col} < ? AND id > ? AND id <= ? AND {cond} GROUP BY 1",
                [*expr_params, since, until, after_id, upto_id, *params],
            )
            .fetchall()
        )
        return {(None if value is None else str(value)): float(total) for value, total in rows}

    # ---- state --------------------------------------------------------------------------------------------------

    def state(self, key: str) -> StateRow | None:
        """The state row of ``key``, if any."""
        row = self._conn().execute(f"SELECT {', '.join(_STATE_COLUMNS)} FROM {STATE} WHERE key = ?", [key]).fetchone()
        return None if row is None else StateRow(*row)

    def states(self, prefix: str | None = None) -> list[StateRow]:
        """Every state row (whose key starts with ``prefix``), by key."""
        sql = f"SELECT {', '.join(_STATE_COLUMNS)} FROM {STATE}"
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
        event: AlertEvent | None,
        now: float,
    ) -> bool:
        """Move ``key`` from ``current`` (``None``: no row yet) to ``changes``, and store ``event``, atomically.

        Returns ``False`` (and changes nothing) when the row is no longer ``current`` — another process or thread
        got there first. On success ``event.id`` is set.
        """
        bad = set(changes) - _CHANGEABLE
        if bad:
            raise ValueError(f"cannot change {sorted(bad)}")
        self._conn()

        def apply(conn: sqlite3.Connection) -> bool:
            if current is None:
                values = {"state": "ok", "severity": "info", "summary": "", **changes}
                columns = ["key", "source", "version", "updated_at", *values]
                cursor = conn.execute(
                    f"INSERT INTO {STATE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
                    " ON CONFLICT (key) DO NOTHING",
                    [key, source, 1, now, *values.values()],
                )
            else:
                sets = ", ".join(f"{column} = ?" for column in changes)
                cursor = conn.execute(
                    f"UPDATE {STATE} SET {sets}{', ' if sets else ''}version = version + 1, updated_at = ?"
                    " WHERE key = ? AND version = ?",
                    [*changes.values(), now, key, current.version],
                )
            if cursor.rowcount != 1:
                return False
            if event is not None:
                event.id = _insert_event(conn, event)
            return True

        return self.db.write(apply)

    def acknowledge(self, state_id: int, by: str | None, now: float) -> AlertEvent | None:
        """Acknowledge the active alert ``state_id``; its ``acknowledged`` event, or ``None`` if it is not active or
        was acknowledged already (only the first of several simultaneous acknowledgements counts)."""
        self._conn()

        def apply(conn: sqlite3.Connection) -> AlertEvent | None:
            row = conn.execute(f"SELECT {', '.join(_STATE_COLUMNS)} FROM {STATE} WHERE id = ?", [state_id]).fetchone()
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
            event = AlertEvent(
                at=now,
                key=current.key,
                source=current.source,
                name=current.name,
                event="acknowledged",
                severity=current.severity,
                metric=last[0] if last else "",
                value=current.value,
                threshold=current.threshold,
                summary=current.summary,
                scope=json.loads(last[1]) if last and last[1] else {},
                by=by,
            )
            event.id = _insert_event(conn, event)
            return event

        return self.db.write(apply)

    # ---- events -------------------------------------------------------------------------------------------------

    def events(self, limit: int = 100, key: str | None = None) -> list[AlertEvent]:
        """The latest events (of ``key``), newest first."""
        sql = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM {EVENTS}"
        params: list[Any] = []
        if key is not None:
            sql += " WHERE key = ?"
            params.append(key)
        rows = self._conn().execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
        out = []
        for row in rows:
            data = dict(zip(_EVENT_COLUMNS, row, strict=True))
            data["scope"] = json.loads(data["scope"]) if data["scope"] else {}
            out.append(AlertEvent(**data))
        return out


def _insert_event(conn: sqlite3.Connection, event: AlertEvent) -> int:
    cursor = conn.execute(
        f"INSERT INTO {EVENTS} (at, key, source, name, event, severity, metric, value, threshold, summary, scope, by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            event.at,
            event.key,
            event.source,
            event.name,
            event.event,
            event.severity,
            event.metric,
            event.value,
            event.threshold,
            event.summary,
            json.dumps(event.scope, separators=(",", ":")) if event.scope else None,
            event.by,
        ],
    )
    return int(cursor.lastrowid or 0)
