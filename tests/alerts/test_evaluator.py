"""Evaluation: metric values over windows and scopes, fire/resolve with `for` and cooldown, stored events, budgets'
warning/exceeded/new-period events, and exactly one notification when several processes evaluate."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Budget, Monitor, Rule, WebhookChannel
from llm_monitor_mw.alerts.evaluator import rule_step
from llm_monitor_mw.alerts.store import StateRow
from llm_monitor_mw.record import CallRecord
from tests.alerts import workers
from tests.alerts.receivers import HTTPReceiver, wait_until
from tests.seed import insert as seed

NOW = time.time()


def rec(seconds_ago: float, **kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": NOW - seconds_ago,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06",
        "status_code": 200,
        "cost_usd": 0.01,
        "duration_ms": 100.0,
    }
    base.update(kw)
    return CallRecord(**base)


# ---- the state machine -------------------------------------------------------------------------------------------


def apply(rule: Rule, row: StateRow | None, value: float | None, now: float) -> tuple[StateRow | None, str | None]:
    step = rule_step(rule, row, value, now)
    if step is None:
        return row, None
    changes, event = step
    base = row or StateRow(
        1, rule.key, "rule", rule.name, "ok", None, None, None, None, None, "", "", None, None, None, 0, now
    )
    fields = {f: getattr(base, f) for f in StateRow.__dataclass_fields__}
    fields.update(changes, version=base.version + 1)
    return StateRow(**fields), event


def run(rule: Rule, values: list[tuple[float, float | None]]) -> list[tuple[float, str]]:
    row: StateRow | None = None
    events = []
    for now, value in values:
        row, event = apply(rule, row, value, now)
        if event:
            events.append((now, event))
    return events


def test_for_duration_must_hold_at_every_evaluation() -> None:
    rule = Rule("r", "error_rate", 0.1, for_=60, cooldown=0)
    # breached at 0 and 30, a dip at 45 resets the clock, breached again from 50: fires at 110, not before
    values = [(0, 0.5), (30, 0.5), (45, 0.0), (50, 0.5), (80, 0.5), (109, 0.5), (110, 0.5), (140, 0.5)]
    assert run(rule, values) == [(110, "fired")]
    assert run(rule, [(0, 0.5), (30, None), (61, 0.5)]) == []  # no data is not a breach


def test_cooldown_keeps_a_flapping_alert_from_storming() -> None:
    rule = Rule("r", "error_rate", 0.1, for_=0, cooldown=300)
    flapping = [(t, 0.5 if (t // 10) % 2 == 0 else 0.0) for t in range(0, 1200, 10)]  # flips every evaluation
    assert run(rule, flapping) == [(0, "fired")]  # never clear for 300 s: one event in 20 minutes
    settles = [(0, 0.5), (10, 0.0), (20, 0.5), (30, 0.0), (200, 0.0), (329, 0.0), (330, 0.0), (340, 0.5)]
    assert run(rule, settles) == [(0, "fired"), (330, "resolved"), (340, "fired")]
    no_cooldown = Rule("r", "error_rate", 0.1, cooldown=0)
    assert run(no_cooldown, [(0, 0.5), (10, 0.0), (20, 0.5)]) == [(0, "fired"), (10, "resolved"), (20, "fired")]


# ---- metrics from the database -----------------------------------------------------------------------------------


def seeded_records() -> list[CallRecord]:
    rows = [
        rec(60 + i, duration_ms=100.0 + i * 10, user="alice", route="/chat", tags={"feature": "chat"})
        for i in range(20)
    ]  # durations 100..290
    rows += [rec(30, status_code=429, error_type="rate_limit_error", cost_usd=None, duration_ms=50.0) for _ in range(3)]
    rows += [rec(20, status_code=500, error_type="server_error", cost_usd=None, user="bob") for _ in range(2)]
    rows += [
        rec(
            10,
            provider="anthropic",
            request_model="claude",
            response_model="claude",
            streamed=True,
            ttft_ms=float(t),
            duration_ms=900.0,
            cost_usd=0.5,
        )
        for t in range(1, 11)
    ]  # ttft 1..10
    rows += [rec(3600, status_code=500, error_type="old", cost_usd=9.0)]  # outside every window below
    return rows


def test_metric_values_over_windows_and_scopes(monitor: Monitor) -> None:
    seed(monitor, seeded_records())
    value = monitor.alerts.evaluator.value

    def v(metric: str, window: float = 600, **scope: str) -> float | None:
        return value(Rule("r", metric, 0, window=window, scope=scope), NOW + 1)

    assert v("requests") == 35 and v("requests", provider="anthropic") == 10
    assert v("error_rate") == pytest.approx(5 / 35)
    assert v("error_rate", provider="openai") == pytest.approx(5 / 25)
    assert v("error_rate", user="bob") == 1.0 and v("error_rate", user="nobody") is None
    assert v("rate_limited") == 3 and v("rate_limited", provider="anthropic") == 0
    assert v("cost_usd") == pytest.approx(20 * 0.01 + 10 * 0.5)
    assert v("cost_usd", model="gpt-4o") == pytest.approx(0.2)  # the requested model matches
    assert v("cost_usd", model="gpt-4o-2024-08-06") == pytest.approx(0.2)  # and so does the answering one
    assert v("cost_usd", route="/chat", tag="feature:chat") == pytest.approx(0.2)
    assert v("requests", window=15) == 10  # only the anthropic calls are in the last 15 s
    durations = sorted([100.0 + i * 10 for i in range(20)] + [50.0] * 3 + [100.0] * 2)
    assert v("latency_p95_ms", provider="openai") == durations[math.ceil(0.95 * 25) - 1] == 280.0  # nearest rank
    assert v("ttft_p95_ms") == 10.0 and v("ttft_p95_ms", provider="openai") is None
    assert value(Rule("r", "latency_p95_ms", 0, min_requests=50), NOW + 1) is None  # too few calls to judge


def test_fire_resolve_and_history_are_stored(monitor: Monitor) -> None:
    seed(monitor, seeded_records())
    alerts = monitor.alerts
    alerts.add_rule(
        Rule(
            "openai errors",
            "error_rate",
            0.1,
            window="5m",
            for_="30s",
            cooldown="2m",
            severity="critical",
            scope={"provider": "openai"},
        )
    )
    alerts.add_rule(Rule("anthropic errors", "error_rate", 0.1, window="5m", scope={"provider": "anthropic"}))
    assert alerts.evaluate_now(now=NOW) == []  # breached, pending for 30 s
    assert [r.state for r in alerts.store.states()] == ["pending"]
    fired = alerts.evaluate_now(now=NOW + 30)
    assert [(e.event, e.name, e.severity, e.threshold) for e in fired] == [("fired", "openai errors", "critical", 0.1)]
    assert fired[0].value == pytest.approx(5 / 25) and fired[0].at == NOW + 30 and fired[0].id is not None
    assert alerts.evaluate_now(now=NOW + 60) == []  # still firing: no new event
    assert [(a.name, a.state) for a in alerts.active()] == [("openai errors", "firing")]
    # the errors leave the 5-minute window at about NOW + 280; resolved two minutes of clear evaluations later
    assert alerts.evaluate_now(now=NOW + 300) == []
    assert [e.event for e in alerts.evaluate_now(now=NOW + 420)] == ["resolved"]
    history = alerts.history()
    assert [(e.event, e.at) for e in history] == [("resolved", NOW + 420), ("fired", NOW + 30)]
    assert history[0].value is None and history[1].summary == "error_rate > 0.1 over 5m (provider=openai)"
    assert alerts.active() == []


def test_acknowledge_records_once(monitor: Monitor) -> None:
    seed(monitor, seeded_records())
    monitor.alerts.add_rule(Rule("errors", "error_rate", 0.1))
    monitor.alerts.evaluate_now(now=NOW)
    (alert,) = monitor.alerts.active()
    first = monitor.alerts.acknowledge(alert.id, by="alice", now=NOW + 5)
    assert first is not None and (first.event, first.by, first.metric) == ("acknowledged", "alice", "error_rate")
    assert monitor.alerts.acknowledge(alert.id, by="bob") is None  # already acknowledged
    assert monitor.alerts.acknowledge(99999) is None
    (acked,) = monitor.alerts.active()
    assert (acked.acked_at, acked.acked_by) == (NOW + 5, "alice")
    assert [e.event for e in monitor.alerts.history()] == ["acknowledged", "fired"]


def test_budget_events_per_period_and_per_value(monitor: Monitor) -> None:
    day = 86400
    start = NOW // day * day
    seed(
        monitor,
        [
            rec(0, started_at=start + 100, cost_usd=4.0, user="alice"),
            rec(0, started_at=start + 200, cost_usd=1.0, user="bob"),
            rec(0, started_at=start - 100, cost_usd=50.0, user="alice"),
        ],
    )  # yesterday
    alerts = monitor.alerts
    alerts.add_budget(Budget("global", 10.0, warn_at=0.4))
    alerts.add_budget(Budget("per user", 3.0, scope={"user": "*"}, warn_at=0.5))
    events = alerts.evaluate_now(now=start + 1000)
    assert sorted((e.key, e.event, e.value) for e in events) == [
        ("budget:global", "warning", 5.0),
        ("budget:per user:alice", "exceeded", 4.0),
    ]
    assert alerts.evaluate_now(now=start + 1100) == []  # no repeats within the period
    seed(monitor, [rec(0, started_at=start + 300, cost_usd=6.0, user="bob")])
    events = alerts.evaluate_now(now=start + 1200)
    assert sorted((e.key, e.event, e.value) for e in events) == [
        ("budget:global", "exceeded", 11.0),
        ("budget:per user:bob", "exceeded", 7.0),
    ]
    assert events[0].scope in ({}, {"user": "bob"})
    # a new day: every budget starts from zero and the raised ones resolve
    events = alerts.evaluate_now(now=start + day + 10)
    assert sorted((e.key, e.event) for e in events) == [
        ("budget:global", "resolved"),
        ("budget:per user:alice", "resolved"),
        ("budget:per user:bob", "resolved"),
    ]
    assert alerts.active() == []


def test_a_broken_rule_does_not_stop_the_others(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(monitor, seeded_records())
    alerts = monitor.alerts
    alerts.add_rule(Rule("broken", "requests", 0))
    alerts.add_rule(Rule("works", "requests", 0))
    original = alerts.evaluator.value

    def value(rule: Rule, now: float) -> float | None:
        if rule.name == "broken":
            raise RuntimeError("boom")
        return original(rule, now)

    monkeypatch.setattr(alerts.evaluator, "value", value)
    assert [e.name for e in alerts.evaluate_now(now=NOW)] == ["works"]
    assert alerts.stats()["errors"] == 1 and "boom" in alerts.stats()["last_error"]


def test_background_loop_fires_and_stops(monitor: Monitor) -> None:
    seed(monitor, [rec(1, status_code=500, error_type="x")])
    with HTTPReceiver() as hook:
        monitor.alerts.add_rule(Rule("errors", "error_rate", 0.5))
        monitor.alerts.add_channel(WebhookChannel(hook.url))
        monitor.alerts.start(interval=0.05)
        assert monitor.alerts.running
        hook.wait_for(1)
        assert hook.json()["event"] == "fired"
        monitor.close()  # stops the loop
        assert not monitor.alerts.running


def test_several_processes_notify_once(tmp_path: Path) -> None:
    """Four processes see the same breached rule and all try to claim its firing: one event, one notification."""
    db = str(tmp_path / "shared.db")
    with Monitor(db) as monitor:
        seed(monitor, [rec(5, status_code=500, error_type="x") for _ in range(3)])
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    with HTTPReceiver() as hook:
        procs = [ctx.Process(target=workers.evaluate_once, args=(db, hook.url, barrier, NOW, out)) for _ in range(4)]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=60) for _ in procs]  # each reports after flushing its channels
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        assert sorted(results) == [[], [], [], ["fired"]]
        assert len(hook.requests) == 1
    with Monitor(db) as monitor:
        assert [e.event for e in monitor.alerts.history()] == ["fired"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_loop_follows_a_fork(monitor: Monitor) -> None:
    """A loop started before gunicorn-style forking keeps evaluating in the worker (the thread itself is not
    inherited)."""
    seed(monitor, [rec(1)])
    monitor.alerts.add_rule(Rule("busy", "requests", 1000))
    monitor.alerts.start(interval=0.02)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its own loop runs, then leave without any cleanup
        try:
            before = monitor.alerts.stats()["evaluations"]
            ok = wait_until(lambda: monitor.alerts.stats()["evaluations"] >= before + 3, timeout=10)
            os.write(write_end, b"1" if ok and monitor.alerts.running else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
