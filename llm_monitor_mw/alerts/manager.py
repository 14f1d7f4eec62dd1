"""`AlertManager`: the public face of alerts and budgets (``monitor.alerts``), wired to a store and hooks."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..hooks import Hooks
from ..record import CallRecord
from ..store.alerts import ACTIVE_STATES, AlertStore, StateRow
from . import config as config_file
from .budgets import MAX_AGE, BudgetGate, SpendTracker
from .channels import Channel, Dispatcher
from .evaluator import Evaluator
from .events import AlertEvent
from .rules import Budget, Rule, normalize_scope

logger = logging.getLogger("llm_monitor_mw")

DEFAULT_INTERVAL = 30.0


class StoreLike(Protocol):
    """What alerts use of the :class:`~llm_monitor_mw.store.Store` facade."""

    engine: Any
    writer: Any
    alerts: AlertStore

    def flush(self, timeout: float | None = None) -> bool: ...


class AlertManager:
    """Rules, budgets and channels over one store; get it as ``monitor.alerts``.

    Nothing runs until :meth:`start` (evaluation every ``interval`` seconds on a daemon thread; stopped by
    ``monitor.close()``), except budgets: from the first one on, a gate counts the calls this process starts, and
    hard budgets refuse calls in the transport. Run it in every worker process, on every host: state changes are
    claimed in the database, so each notification is sent once across the fleet.

    Args:
        store: the :class:`~llm_monitor_mw.store.Store` (its ``alerts`` SQL, ``writer`` and ``flush``).
        hooks: where the budget gate and the record listener are added and internal failures counted.
        interval: default seconds between evaluations.
        max_age: seconds a budget's spend read is trusted on PostgreSQL (see :data:`~.budgets.MAX_AGE`).
    """

    def __init__(
        self, store: StoreLike, hooks: Hooks, *, interval: float = DEFAULT_INTERVAL, max_age: float = MAX_AGE
    ) -> None:
        self.interval = interval
        self.max_age = max_age
        self.hooks = hooks
        self._store = store
        self.store: AlertStore = getattr(store, "alerts", None) or AlertStore(store.engine)
        self.dispatcher = Dispatcher()
        self._rules: dict[str, Rule] = {}
        self._trackers: dict[str, SpendTracker] = {}
        self._lock = threading.Lock()
        self._gate: BudgetGate | None = None
        self.evaluator = Evaluator(
            self.store,
            self.dispatcher,
            lambda: self._rules.values(),
            lambda: self._trackers.values(),
            on_error=hooks.count_error,
        )

    # ---- configuration ------------------------------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules.values())

    @property
    def budgets(self) -> list[Budget]:
        return [tracker.budget for tracker in self._trackers.values()]

    @property
    def channels(self) -> list[Channel]:
        return self.dispatcher.channels

    def add_rule(self, rule: Rule | None = None, /, **fields: Any) -> Rule:
        """Add a :class:`Rule` (or build one from ``fields``: ``add_rule(name=..., metric=..., threshold=...)``)."""
        rule = rule if rule is not None else Rule(**fields)
        if not isinstance(rule, Rule):
            raise TypeError(f"expected a Rule, got {rule!r}")
        with self._lock:
            if rule.name in self._rules:
                raise ValueError(f"rule {rule.name!r}: name: a rule with this name exists already")
            self._rules = {**self._rules, rule.name: rule}
        return rule

    def add_budget(self, budget: Budget | None = None, /, **fields: Any) -> Budget:
        """Add a :class:`Budget` (or build one from ``fields``). A hard budget guards the transport at once."""
        budget = budget if budget is not None else Budget(**fields)
        if not isinstance(budget, Budget):
            raise TypeError(f"expected a Budget, got {budget!r}")
        writer = self._store.writer
        tracker = SpendTracker(budget, self.store, lambda: writer.written, max_age=self.max_age)
        with self._lock:
            if budget.name in self._trackers:
                raise ValueError(f"budget {budget.name!r}: name: a budget with this name exists already")
            self._trackers = {**self._trackers, budget.name: tracker}
            if self._gate is None:
                self._gate = BudgetGate(lambda: self._trackers.values(), self._store.flush)
                self.hooks.add_listener(self._on_record)
                self.hooks.add_gate(self._gate)
        return budget

    def add_channel(self, channel: Channel) -> Channel:
        """Send every event from now on to ``channel`` too."""
        self.dispatcher.add(channel)
        return channel

    def load(self, path: str | os.PathLike[str]) -> None:
        """Add the rules, budgets and channels of a TOML (or YAML) file; ``[alerts] interval`` sets the interval.

        The whole file is validated before anything is added.
        """
        loaded = config_file.load(path)
        taken = [r.name for r in loaded.rules if r.name in self._rules]
        taken += [b.name for b in loaded.budgets if b.name in self._trackers]
        if taken:
            raise ValueError(f"{path}: name: already defined: {', '.join(taken)}")
        for rule in loaded.rules:
            self.add_rule(rule)
        for budget in loaded.budgets:
            self.add_budget(budget)
        for channel in loaded.channels:
            self.add_channel(channel)
        if loaded.interval is not None:
            self.interval = loaded.interval

    # ---- running ------------------------------------------------------------------------------------------------

    def start(self, interval: float | None = None) -> AlertManager:
        """Evaluate every ``interval`` seconds (default: :attr:`interval`) on a daemon thread, first right away."""
        self.evaluator.start(self.interval if interval is None else interval)
        return self

    def stop(self) -> None:
        """Stop evaluating and give queued notifications a moment (at most 5 s) to go out."""
        self.evaluator.stop()
        self.dispatcher.flush(5.0)

    def close(self) -> None:
        """Stop, and take the budget gate and listener off the hooks."""
        self.stop()
        with self._lock:
            if self._gate is not None:
                self.hooks.remove_gate(self._gate)
                self.hooks.remove_listener(self._on_record)
                self._gate = None

    @property
    def running(self) -> bool:
        """Whether the background evaluation is running."""
        return self.evaluator.running

    def evaluate_now(self, now: float | None = None) -> list[AlertEvent]:
        """Evaluate once, now (or as if at ``now``); the events this process recorded and queued for sending."""
        return self.evaluator.evaluate(now)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued notifications were sent (or failed); ``False`` if ``timeout`` ran out first."""
        return self.dispatcher.flush(timeout)

    # ---- budgets ------------------------------------------------------------------------------------------------

    def budget_exceeded(self, scope: Mapping[str, str] | None = None) -> bool:
        """Whether a call with these attributes would be over a budget (hard or not) that covers it.

        ``scope`` names the call's attributes, e.g. ``{"user": "alice", "model": "gpt-4o"}`` or
        ``{"tag": "customer:acme"}``. A budget counts when the scope gives every attribute it is limited to:
        ``None`` checks the budgets over all calls only; ``{"user": "alice"}`` adds those for ``user=alice`` and
        the per-user ones (``user="*"``) for alice.

        The same view of spend as the hard limit's: every instance's written calls plus this process's calls not
        written yet; near a limit this process's finished calls are written first, so it is ``True`` as soon as
        the call that reached the limit has returned.
        """
        given = normalize_scope(scope, "scope", each=False)
        gate = self._gate
        return gate is not None and gate.exceeded(given)

    def budget_status(self, now: float | None = None) -> list[dict[str, Any]]:
        """Per budget (and per value of per-value budgets that spent anything): spend against the limit.

        Keys: ``name``, ``value``, ``summary``, ``period``, ``period_start``, ``period_end``, ``spent``, ``limit``,
        ``fraction``, ``warn_at``, ``hard``, ``state`` (``ok``, ``warning`` or ``exceeded``).
        """
        out = []
        for tracker in list(self._trackers.values()):
            budget = tracker.budget
            start, end = tracker.period(now)
            totals = tracker.totals(now=now)
            values = sorted((v for v in totals if v is not None), key=lambda v: -totals[v])[:50]
            for value in values if budget.group is not None else [None]:
                spent = totals.get(value, 0.0)
                state = "ok"
                if spent >= budget.limit_usd:
                    state = "exceeded"
                elif budget.warn_at and spent >= budget.warn_at * budget.limit_usd:
                    state = "warning"
                out.append(
                    {
                        "name": budget.name,
                        "value": value,
                        "summary": budget.describe(value),
                        "period": budget.period,
                        "period_start": start,
                        "period_end": end,
                        "spent": spent,
                        "limit": budget.limit_usd,
                        "fraction": spent / budget.limit_usd,
                        "warn_at": budget.warn_at,
                        "hard": budget.hard,
                        "state": state,
                    }
                )
        return out

    # ---- state and history --------------------------------------------------------------------------------------

    def active(self) -> list[StateRow]:
        """Alerts firing and budgets in warning or exceeded, most recent first (from every process)."""
        rows = [row for row in self.store.states() if row.state in ACTIVE_STATES]
        return sorted(rows, key=lambda row: -(row.fired_at or 0.0))

    def history(self, limit: int = 100) -> list[AlertEvent]:
        """The latest events, newest first."""
        return [AlertEvent(**row) for row in self.store.events(limit)]

    def acknowledge(self, alert_id: int, by: str | None = None, now: float | None = None) -> AlertEvent | None:
        """Acknowledge an active alert (its ``alert_state`` id); the event, or ``None`` if there was nothing to do."""
        row = self.store.acknowledge(alert_id, by, time.time() if now is None else now)
        return None if row is None else AlertEvent(**row)

    def stats(self) -> dict[str, Any]:
        """Evaluations, evaluation errors, refused calls and per-channel delivery counters."""
        evaluator = self.evaluator
        return {
            "running": self.running,
            "evaluations": evaluator.evaluations,
            "errors": evaluator.errors,
            "last_error": evaluator.last_error,
            "last_run_at": evaluator.last_run_at,
            "refused": self._gate.refused if self._gate is not None else 0,
            "channels": self.dispatcher.stats(),
        }

    # ---- wiring -------------------------------------------------------------------------------------------------

    def _on_record(self, record: CallRecord) -> None:
        for tracker in list(self._trackers.values()):
            tracker.add(record)
        gate = self._gate
        if gate is not None:
            gate.observe(record)  # after the trackers: a call counts as priced once its spend is counted

    def __repr__(self) -> str:
        return f"AlertManager(rules={len(self._rules)}, budgets={len(self._trackers)}, channels={len(self.channels)})"
