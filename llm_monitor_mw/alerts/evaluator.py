"""Evaluation: metric values from the database, state transitions, and the background loop that runs them.

The transitions are pure functions (:func:`rule_step`, :func:`budget_step`) of the stored state, the observed value
and the time; :class:`Evaluator` applies them through :meth:`AlertStore.claim`, so that when several processes
evaluate the same rules each change (and its notification) happens exactly once.

Rules: ``ok`` → ``pending`` (condition true, waiting for ``for``) → ``firing`` (event *fired*) → condition false for
``cooldown`` → ``ok`` (event *resolved*). Budgets, per period: ``ok`` → ``warning`` → ``exceeded`` (an event each),
and back to ``ok`` (event *resolved*) when a new period starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ..store.alerts import AlertStore, StateRow
from .budgets import SpendTracker
from .channels import Dispatcher
from .events import EXCEEDED, FIRED, RESOLVED, WARNING, AlertEvent
from .rules import Budget, Rule

logger = logging.getLogger("llm_monitor_mw")

Step = tuple[dict[str, Any], str | None]
"""The columns to change and the event to record (or ``None``)."""

_LEVELS = {"ok": 0, WARNING: 1, EXCEEDED: 2}


def rule_step(rule: Rule, row: StateRow | None, value: float | None, now: float) -> Step | None:
    """The change a rule's state needs after observing ``value`` at ``now`` (``None``: nothing to change)."""
    state = row.state if row is not None else "ok"
    breached = rule.breached(value)
    fire = {"state": "firing", "fired_at": now, "clear_since": None, "value": value, "acked_at": None, "acked_by": None}
    if state == "firing":
        assert row is not None
        if breached:
            return ({"clear_since": None}, None) if row.clear_since is not None else None
        if row.clear_since is None and rule.cooldown > 0:  # type: ignore[operator]
            return {"clear_since": now}, None
        clear_since = now if row.clear_since is None else row.clear_since
        if now - clear_since >= rule.cooldown:  # type: ignore[operator]
            return {"state": "ok", "since": None, "clear_since": None, "value": value}, RESOLVED
        return None
    if not breached:
        return ({"state": "ok", "since": None}, None) if state == "pending" else None
    if state == "pending":
        assert row is not None and row.since is not None
        return (fire, FIRED) if now - row.since >= rule.for_ else None  # type: ignore[operator]
    if rule.for_ <= 0:  # type: ignore[operator]
        return {**fire, "since": now}, FIRED
    return {"state": "pending", "since": now, "value": value}, None


def budget_step(budget: Budget, row: StateRow | None, spent: float, period_start: float, now: float) -> Step | None:
    """The change a budget's state needs at ``spent`` in the period starting at ``period_start``."""
    level = "ok"
    if spent >= budget.limit_usd:
        level = EXCEEDED
    elif budget.warn_at and spent >= budget.warn_at * budget.limit_usd:
        level = WARNING
    same_period = row is not None and row.period_start == period_start
    current = row.state if row is not None and same_period else "ok"
    raised = {"state": level, "period_start": period_start, "fired_at": now, "value": spent}
    if row is not None and not same_period and row.state != "ok":  # a new period: start again from zero
        cleared = {**raised, "acked_at": None, "acked_by": None}
        return (cleared, RESOLVED) if level == "ok" else (cleared, level)
    if _LEVELS[level] > _LEVELS[current]:
        return {**raised, "acked_at": None, "acked_by": None}, level
    return None


class Evaluator:
    """Evaluates rules and budgets, records state changes, and hands the events it won to the dispatcher."""

    def __init__(
        self,
        store: AlertStore,
        dispatcher: Dispatcher,
        rules: Callable[[], Iterable[Rule]],
        trackers: Callable[[], Iterable[SpendTracker]],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.store = store
        self._on_error = on_error
        self.dispatcher = dispatcher
        self._rules = rules
        self._trackers = trackers
        self.evaluations = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_run_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self._interval: float | None = None  # set while the loop should run
        self._held_for_fork = False
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(
                before=lambda: _hold_for_fork(ref),
                after_in_parent=lambda: _release_after_fork(ref),
                after_in_child=lambda: _restart_in_child(ref),
            )

    # ---- one pass -----------------------------------------------------------------------------------------------

    def value(self, rule: Rule, now: float) -> float | None:
        """The rule's metric over ``[now - window, now)`` (``None``: no data)."""
        since = now - rule.window  # type: ignore[operator]
        if rule.metric in ("latency_p95_ms", "ttft_p95_ms"):
            column = "duration_ms" if rule.metric == "latency_p95_ms" else "ttft_ms"
            return self.store.percentile(column, rule.scope, since, now, 0.95, max(1, rule.min_requests))
        stats = self.store.window_stats(rule.scope, since, now)
        if rule.metric == "error_rate":
            return stats.errors / stats.requests if stats.requests and stats.requests >= rule.min_requests else None
        return float(
            {"requests": stats.requests, "rate_limited": stats.rate_limited, "cost_usd": stats.cost_usd}[rule.metric]
        )

    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Evaluate every rule and budget once; the events this process recorded (and queued for the channels)."""
        with self._run_lock:  # the loop and evaluate_now() never interleave their claims
            now = time.time() if now is None else now
            events: list[AlertEvent] = []
            for rule in list(self._rules()):
                self._guard(rule.name, lambda rule=rule: self._rule(rule, now, events))
            for tracker in list(self._trackers()):
                self._guard(tracker.budget.name, lambda tracker=tracker: self._budget(tracker, now, events))
            self.evaluations += 1
            self.last_run_at = now
            for event in events:
                self.dispatcher.dispatch(event)
            return events

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # one broken rule or a locked database never stops the others
            self.errors += 1
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
            logger.exception("llm_monitor_mw: evaluating alert %r failed", name)
            if self._on_error is not None:
                self._on_error(exc)

    def _rule(self, rule: Rule, now: float, events: list[AlertEvent]) -> None:
        value = self.value(rule, now)
        row = self.store.state(rule.key)
        step = rule_step(rule, row, value, now)
        if step is None:
            return
        changes, kind = step
        changes.update(name=rule.name, severity=rule.severity, summary=rule.describe(), threshold=rule.threshold)
        event = None
        if kind is not None:
            event = AlertEvent(
                at=now,
                key=rule.key,
                source="rule",
                name=rule.name,
                event=kind,
                severity=rule.severity,
                metric=rule.metric,
                value=value,
                threshold=rule.threshold,
                summary=rule.describe(),
                scope=dict(rule.scope),
            )
        if self.store.claim(row, rule.key, "rule", changes, event, now) and event is not None:
            events.append(event)

    def _budget(self, tracker: SpendTracker, now: float, events: list[AlertEvent]) -> None:
        budget = tracker.budget
        start, _ = tracker.period(now)
        totals = tracker.totals(now=now, reread=True)  # once per evaluation: always from the store
        if budget.group is None:
            self._budget_value(budget, None, totals.get(None, 0.0), start, now, events)
            return
        rows = {row.key: row for row in self.store.states(f"budget:{budget.name}:") if row.name == budget.name}
        values = {value for value, spent in totals.items() if value is not None and _level_reached(budget, spent)}
        values |= {key[len(budget.key("")) :] for key, row in rows.items() if row.state != "ok"}
        for value in sorted(values):
            self._budget_value(budget, value, totals.get(value, 0.0), start, now, events, rows.get(budget.key(value)))

    def _budget_value(
        self,
        budget: Budget,
        value: str | None,
        spent: float,
        start: float,
        now: float,
        events: list[AlertEvent],
        row: StateRow | None = None,
    ) -> None:
        key = budget.key(value)
        row = row if row is not None else self.store.state(key)
        step = budget_step(budget, row, spent, start, now)
        if step is None:
            return
        changes, kind = step
        changes.update(
            name=budget.name, severity=budget.severity, summary=budget.describe(value), threshold=budget.limit_usd
        )
        event = None
        if kind is not None:
            event = AlertEvent(
                at=now,
                key=key,
                source="budget",
                name=budget.name,
                event=kind,
                severity=budget.severity,
                metric="cost_usd",
                value=spent,
                threshold=budget.limit_usd if kind != WARNING else budget.limit_usd * (budget.warn_at or 1.0),
                summary=budget.describe(value),
                scope=budget.scope_for(value),
            )
        if self.store.claim(row, key, "budget", changes, event, now) and event is not None:
            events.append(event)

    # ---- background loop ----------------------------------------------------------------------------------------

    def start(self, interval: float) -> None:
        """Evaluate every ``interval`` seconds on a daemon thread (the first pass right away)."""
        if interval <= 0:
            raise ValueError(f"interval: must be more than 0 seconds, got {interval!r}")
        if self._thread is not None and self._thread.is_alive():
            return
        self._interval = interval
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="llm-monitor-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait (up to ``timeout``) for a pass in progress to end."""
        self._interval = None
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate()
            except Exception:  # pragma: no cover - evaluate() guards each rule; this is the last resort
                self.errors += 1
                logger.exception("llm_monitor_mw: alert evaluation failed")
            self._stop.wait(interval)


def _hold_for_fork(ref: weakref.ref[Evaluator]) -> None:
    """Before a fork: wait for a pass in progress to end, so that the child does not inherit SQLite's internal
    locks held by the loop's thread mid-query (the child would hang at its first query)."""
    evaluator = ref()
    if evaluator is not None and evaluator._interval is not None:
        evaluator._held_for_fork = evaluator._run_lock.acquire(timeout=5.0)


def _release_after_fork(ref: weakref.ref[Evaluator]) -> None:
    evaluator = ref()
    if evaluator is not None and evaluator._held_for_fork:
        evaluator._held_for_fork = False
        evaluator._run_lock.release()


def _restart_in_child(ref: weakref.ref[Evaluator]) -> None:
    """After a fork (gunicorn and friends), a loop that ran in the parent runs in the child too: the parent's thread
    did not come along."""
    evaluator = ref()
    if evaluator is None:
        return
    evaluator._held_for_fork = False
    evaluator._run_lock = threading.Lock()
    evaluator._stop = threading.Event()
    evaluator._thread = None
    if evaluator._interval is not None:
        evaluator.start(evaluator._interval)


def _level_reached(budget: Budget, spent: float) -> bool:
    threshold = budget.limit_usd * (budget.warn_at or 1.0)
    return spent >= threshold
