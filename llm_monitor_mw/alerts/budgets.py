"""Spend per budget, fast enough for the transport, and the hard limit that refuses calls.

One view of spend serves the transport's gate, ``budget_exceeded()`` and the evaluator: what the store says (every
instance's written calls: the whole fleet on PostgreSQL), read from the roll-ups the writer maintains
(:meth:`AlertStore.spend`), plus what this process has priced but not written yet. :class:`SpendTracker` re-reads
the store only when it may have changed: on SQLite when ``PRAGMA data_version`` (a few microseconds) says another
connection committed; on PostgreSQL at most every :data:`MAX_AGE` seconds. It adds the records the writer's
listener hands it; a record counts locally until a store read that must include it: each is stamped with the
writer's ``written`` counter when it is seen, and dropped once the counter had moved past it before a read (so it
may be counted twice for a moment, never not at all).

:class:`BudgetGate` runs inside the transport, on the caller's thread, before an LLM request leaves the process,
and counts the calls this process started. Near a limit — or when this process has calls not priced yet — it first
has this process's finished calls written and re-reads the store, for a hard budget before each call (so the
overshoot stays within the calls already in flight, see the README) and for ``budget_exceeded()`` (so it says
``True`` as soon as the call that crossed the limit has returned).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..capture.pending import _MODEL_RE, SCAN_BYTES, PendingCall
from ..capture.transport import CallRefused
from ..record import CallRecord
from ..store.alerts import AlertStore
from .rules import Budget, describe_scope, period_bounds

PRECISE_FROM = 0.8
"""From this fraction of a hard limit on, the gate has this process's finished calls written before every call."""
UNWRITTEN_SHARE = 0.1
"""Below :data:`PRECISE_FROM`, the gate has them written once their spend (calls still in flight counted at the
most expensive call seen) reaches this share of what is left of the budget, so other processes see it in time."""
FLUSH_WAIT = 1.0
"""Longest the gate waits for the writer (near a limit only)."""
MAX_AGE = 0.25
"""Seconds a spend read is trusted on an engine that cannot tell cheaply whether anything changed (PostgreSQL);
near a limit the gate re-reads before every call anyway."""

_NO_MATCH = object()


class BudgetExceeded(CallRefused):
    """Raised by the transport instead of sending a call that a hard :class:`Budget` refuses.

    It is not an ``httpx`` error. ``openai`` >= 3 lets it propagate as it is; ``openai`` 2.x and ``anthropic``
    retry it ``max_retries`` times and then raise their ``APIConnectionError`` with this exception as
    ``__cause__``. Every retry is refused here the same way, so none of them reaches the network.

    Attributes: ``budget`` (the :class:`Budget`), ``spent`` and ``limit`` (USD), ``period``, ``value`` (the user,
    model, … of a per-value budget, else ``None``) and ``resets_at`` (Unix seconds).
    """

    def __init__(self, budget: Budget, spent: float, value: str | None, resets_at: float) -> None:
        self.budget = budget
        self.spent = spent
        self.limit = budget.limit_usd
        self.period = budget.period
        self.value = value
        self.resets_at = resets_at
        reset = datetime.fromtimestamp(resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        scope = describe_scope(budget.scope_for(value))
        super().__init__(
            f"LLM call refused: budget {budget.name!r} ({scope}) has spent ${spent:.6g} of its ${budget.limit_usd:.6g}"
            f" per {budget.period}; it resets at {reset}"
        )


# ---- which calls a budget covers --------------------------------------------------------------------------------


def requested_model(pending: PendingCall) -> str | None:
    """The model a request asks for: from its path (Gemini, Azure) or a bounded scan of both ends of its body."""
    if pending.route.path_model:
        return pending.route.path_model
    body = pending.req_body
    if not body:
        return None
    for window in (body,) if len(body) <= 2 * SCAN_BYTES else (body[:SCAN_BYTES], body[-SCAN_BYTES:]):
        match = _MODEL_RE.search(window)
        if match:
            raw = match.group(1)
            try:
                return json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
            except ValueError:
                return raw.decode("utf-8", "replace")
    return None


class CallView:
    """A pending call's budget dimensions, each worked out once and only when a budget asks for it."""

    __slots__ = ("_model", "pending")

    def __init__(self, pending: PendingCall) -> None:
        self.pending = pending
        self._model: Any = _NO_MATCH

    def get(self, key: str) -> str | None:
        pending = self.pending
        if key == "provider":
            return pending.route.provider
        if key == "model":
            if self._model is _NO_MATCH:
                self._model = requested_model(pending)
            return self._model
        if key == "user":
            user = pending.tags.get("user")
            if user:
                return user
            return pending.inbound.user if pending.inbound is not None else None
        if key == "route":
            return pending.inbound.route if pending.inbound is not None else None
        if key.startswith("tag:"):
            return pending.tags.get(key[4:])
        raise KeyError(key)


def _record_get(record: CallRecord, key: str) -> str | None:
    if key == "model":
        return record.request_model or record.model
    if key.startswith("tag:"):
        return record.tags.get(key[4:]) if record.tags else None
    return getattr(record, key)


def _dimension(key: str, value: str) -> tuple[str, str]:
    """A scope entry as (dimension, wanted value): tags become ``("tag:key", value)``."""
    if key == "tag":
        tag_key, _, tag_value = value.partition(":")
        return f"tag:{tag_key}", tag_value
    return key, value


class Coverage:
    """Which calls a budget counts, and under which value of its group."""

    def __init__(self, budget: Budget) -> None:
        self.fixed = [_dimension(k, v) for k, v in budget.fixed_scope.items()]
        self.group = budget.group

    def of_call(self, call: CallView) -> Any:
        """The group value (``None`` for a budget without group) a pending call counts under, or ``_NO_MATCH``."""
        return self._select(call.get)

    def of_record(self, record: CallRecord) -> Any:
        """The same for a finished, priced record (a model budget matches the requested or the answering model)."""
        return self._select(
            lambda dim: _record_get(record, dim), model=lambda want: want in (record.model, record.request_model)
        )

    def of_scope(self, scope: Mapping[str, str]) -> Any:
        """The same for ``budget_exceeded(scope)``: the budget applies when the scope names every dimension it
        needs with the wanted value."""
        return self._select(dict(_dimension(k, v) for k, v in scope.items()).get)

    def _select(self, get: Callable[[str], Any], *, model: Callable[[str], bool] | None = None) -> Any:
        """``get(dimension)`` against the fixed scope, then the group value; ``model`` overrides the model test."""
        for dim, want in self.fixed:
            matched = model(want) if dim == "model" and model is not None else get(dim) == want
            if not matched:
                return _NO_MATCH
        if self.group is None:
            return None
        value = get(self.group)
        return _NO_MATCH if value is None else value


# ---- spend --------------------------------------------------------------------------------------------------------


class SpendTracker:
    """One budget's spend in the current period, per group value (one total under ``None`` without group).

    Args:
        budget: the budget.
        store: where written spend is read.
        written: the writer's ``written`` counter (records of this process written so far).
        max_age: seconds a read is trusted when the store cannot say whether it changed (see :data:`MAX_AGE`).
    """

    def __init__(
        self, budget: Budget, store: AlertStore, written: Callable[[], int], *, max_age: float = MAX_AGE
    ) -> None:
        self.budget = budget
        self.coverage = Coverage(budget)
        self.store = store
        self.max_age = max_age
        self._written = written
        self._lock = threading.Lock()  # guards the figures below (the writer thread adds to them)
        self._refreshing = threading.Lock()  # one store read at a time
        self._seen = threading.local()  # the change token this thread's connection last reported
        self._period: tuple[float, float] | None = None
        self._db: dict[str | None, float] = {}
        self._read_at = -math.inf  # time.monotonic() of the last read
        self._rate = 0.0  # growth of the store's total spend between the last two reads, USD per second
        self._local: dict[str | None, float] = {}
        # (writer's written counter when seen, value, cost, started_at) of records the store may not have yet
        self._entries: deque[tuple[int, str | None, float, float]] = deque()
        self._pid = os.getpid()
        self.reads = 0
        """Store reads so far."""

    # -- writer thread --

    def add(self, record: CallRecord) -> None:
        """Count a priced record of this process until the store has it (called by the writer's listener)."""
        cost = record.cost_usd
        if not cost:
            return
        value = self.coverage.of_record(record)
        if value is _NO_MATCH:
            return
        stamp = self._written()
        with self._lock:
            period = self._period
            if period is not None and not period[0] <= record.started_at < period[1]:
                return  # another period: the store read of that period will have it
            self._entries.append((stamp, value, cost, record.started_at))
            self._local[value] = self._local.get(value, 0.0) + cost

    # -- readers --

    def spent(self, value: str | None = None, *, now: float | None = None, reread: bool = False) -> float:
        """Spend under ``value`` in the period containing ``now`` (``reread``: read the store even if unchanged)."""
        self._update(now, reread)
        with self._lock:
            return self._db.get(value, 0.0) + self._local.get(value, 0.0)

    def totals(self, *, now: float | None = None, reread: bool = False) -> dict[str | None, float]:
        """Spend per value in the period containing ``now``."""
        self._update(now, reread)
        with self._lock:
            out = dict(self._db)
            for value, amount in self._local.items():
                out[value] = out.get(value, 0.0) + amount
            return out

    def unwritten(self, value: str | None = None) -> float:
        """This process's spend under ``value`` that the last store read did not include."""
        with self._lock:
            return self._local.get(value, 0.0)

    def drift(self) -> float:
        """How much the store's spend may have grown since the last read and before the next one: the recent
        growth rate over twice :attr:`max_age` on an engine read on a clock, else 0 (every change is seen)."""
        if getattr(self._seen, "token", None) is not None:
            return 0.0
        return self._rate * 2 * self.max_age

    def period(self, now: float | None = None) -> tuple[float, float]:
        """Start and end of the budget's period containing ``now``."""
        return period_bounds(self.budget.period, time.time() if now is None else now)

    def _update(self, now: float | None, reread: bool) -> None:
        bounds = self.period(now)
        if os.getpid() != self._pid:  # forked: the parent's unwritten records are not ours to count
            with self._lock:
                self._pid = os.getpid()
                self._entries.clear()
                self._local.clear()
                self._period = None
        token = self.store.change_token()
        if not reread and bounds == self._period:
            if token is None:
                if time.monotonic() - self._read_at < self.max_age:
                    return
            elif token == getattr(self._seen, "token", None):
                return
        with self._refreshing:
            self._refresh(bounds)
        self._seen.token = token  # read before the refresh: a commit after it shows up at the next call

    def _refresh(self, bounds: tuple[float, float]) -> None:
        stamp = self._written()  # records written before this point are in the read below
        rows = self.store.spend(self.budget.fixed_scope, self.budget.group, bounds[0], bounds[1])
        read_at = time.monotonic()
        self.reads += 1
        with self._lock:
            if bounds == self._period and read_at > self._read_at:
                grown = sum(rows.values()) - sum(self._db.values())
                self._rate = max(0.0, grown / (read_at - self._read_at)) if grown > 0 else self._rate / 2
            else:
                self._rate = 0.0
            self._db = rows
            self._read_at = read_at
            entries = self._entries
            if bounds != self._period:
                self._period = bounds
                entries = self._entries = deque(e for e in entries if bounds[0] <= e[3] < bounds[1])
            while entries and entries[0][0] < stamp:  # in stamp order: one writer thread appends them
                entries.popleft()
            local: dict[str | None, float] = {}
            for _, value, cost, _ in entries:
                local[value] = local.get(value, 0.0) + cost
            self._local = local


# ---- enforcement ----------------------------------------------------------------------------------------------


class BudgetGate:
    """A transport gate (``hooks.add_gate``) that counts this process's calls and raises :class:`BudgetExceeded`
    for calls over a hard budget; also the check behind ``budget_exceeded()``.

    Cheap while spend is well below every limit: a change check and a dict lookup per hard budget, plus a store
    read when something changed. It waits (at most :data:`FLUSH_WAIT`) for the writer to write this process's
    finished calls, and re-reads, when spend is at :data:`PRECISE_FROM` of a limit or more, or when this process's
    spend the store does not have yet (calls in flight counted at the most expensive call seen) reaches
    :data:`UNWRITTEN_SHARE` of what is left.
    """

    def __init__(self, trackers: Callable[[], Iterable[SpendTracker]], flush: Callable[[float], bool]) -> None:
        self._trackers = trackers
        self._flush = flush
        self._lock = threading.Lock()
        self.started = 0
        """Calls this process started (gate runs)."""
        self.listened = 0
        """Records of this process priced (listener runs)."""
        self.max_cost: float | None = None
        self.refused = 0

    def observe(self, record: CallRecord) -> None:
        """Count a priced record (writer listener, writer thread)."""
        with self._lock:
            # a call started before the gate was added is not counted as started: never count past the gate
            self.listened = min(self.listened + 1, self.started)
        cost = record.cost_usd
        if cost is not None and (self.max_cost is None or cost > self.max_cost):
            self.max_cost = cost

    def __call__(self, pending: PendingCall) -> None:
        with self._lock:
            unpriced = max(0, self.started - self.listened)  # this process's calls in flight or queued
            self.started += 1
        call: CallView | None = None
        for tracker in self._trackers():
            budget = tracker.budget
            if not budget.hard:
                continue
            if call is None:
                call = CallView(pending)
            value = tracker.coverage.of_call(call)
            if value is _NO_MATCH:
                continue
            spent = self.spent(tracker, value, unpriced)
            if spent >= budget.limit_usd:
                self.refused += 1
                raise BudgetExceeded(budget, spent, value, tracker.period()[1])

    def exceeded(self, scope: Mapping[str, str]) -> bool:
        """Whether a call with the attributes ``scope`` is over a budget (hard or not) that covers it."""
        unpriced = max(0, self.started - self.listened)
        for tracker in list(self._trackers()):
            value = tracker.coverage.of_scope(scope)
            if value is not _NO_MATCH and self.spent(tracker, value, unpriced) >= tracker.budget.limit_usd:
                return True
        return False

    def spent(self, tracker: SpendTracker, value: str | None, unpriced: int) -> float:
        """The tracker's spend under ``value``, made exact first (writer flushed, store re-read) when near the
        limit or when ``unpriced`` calls of this process may take it there."""
        spent = tracker.spent(value)
        if spent < tracker.budget.limit_usd and self._near(tracker, value, spent, unpriced):
            # this process's finished calls go to the store first, for the other instances to see as well (never
            # from the writer thread itself: a listener calling budget_exceeded() would wait for itself)
            if (unpriced or tracker.unwritten(value)) and threading.current_thread().name != "llm-monitor-writer":
                self._flush(FLUSH_WAIT)
            spent = tracker.spent(value, reread=True)
        return spent

    def _near(self, tracker: SpendTracker, value: str | None, spent: float, unpriced: int) -> bool:
        limit = tracker.budget.limit_usd
        if spent + tracker.drift() >= PRECISE_FROM * limit:
            return True
        if unpriced and self.max_cost is None:
            return True  # nothing priced yet: no idea what a call costs
        unwritten = tracker.unwritten(value) + unpriced * (self.max_cost or 0.0)
        return unwritten > 0 and unwritten >= UNWRITTEN_SHARE * (limit - spent)
