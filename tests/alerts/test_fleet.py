"""Fleet semantics of alerts and budgets: several processes, each its own Monitor and instance name, standing in for
several hosts that share one PostgreSQL database (and, where cheap, one SQLite file)."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.record import CallRecord
from tests.alerts import workers
from tests.alerts.receivers import HTTPReceiver
from tests.seed import insert as seed

CTX = multiprocessing.get_context("spawn")


def test_each_state_change_notifies_once_across_the_fleet(store_target: str) -> None:
    """Three instances evaluate the same rule at the same moments; every one reads the state before any claims.
    The alert fires once and resolves once: one event each in the store, one notification each."""
    now = time.time()
    with Monitor(store_target) as monitor:
        failed = CallRecord(started_at=now - 30, provider="p", operation="chat", endpoint="/", status_code=500)
        seed(monitor, [failed])
    # fires at now; resolves at now + 1200, when the failed call has left the 10-minute window
    rounds = [now, now + 1200]
    instances = 3
    with HTTPReceiver() as hook:
        barrier, out = CTX.Barrier(instances), CTX.Queue()
        procs = [
            CTX.Process(
                target=workers.evaluate_rounds, args=(store_target, hook.url, f"host-{i}", barrier, rounds, out)
            )
            for i in range(instances)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        assert [r["errors"] for r in results] == [0] * instances
        won = [event for r in results for events in r["won"] for event in events]
        assert sorted(won) == ["fired", "resolved"]  # one winner per change, whoever it was
        time.sleep(0.3)  # nothing else is on its way
        assert sorted(hook.json(i)["event"] for i in range(len(hook.requests))) == ["fired", "resolved"]
    with Monitor(store_target) as monitor:
        assert [e.event for e in monitor.alerts.history()] == ["resolved", "fired"]
        (row,) = monitor.alerts.store.states()
        assert (row.state, row.version) == ("ok", 2)


def _crossing(rows: list[tuple[float, float, float]], limit: float) -> float:
    """When the fleet's spend reached ``limit``: the end of the call that took it there (rows: start, end, cost)."""
    spent = 0.0
    for _, end, cost in sorted(rows, key=lambda r: r[1]):
        spent += cost
        if spent >= limit:
            return end
    raise AssertionError(f"the spend never reached {limit}")


def test_a_hard_budget_holds_across_the_fleet(pg_url: str, fake_llm: FakeLLMServer) -> None:
    """Two instances with four threads each, the real openai SDK, one hard budget over the fleet's spend. The
    overshoot stays within the calls that were in flight when the limit was reached (at most one per thread)."""
    instances, threads = 2, 4
    with Monitor(pg_url, instance="probe") as monitor:
        cost = _one_call(monitor, fake_llm)
    limit = 80.5 * cost
    ready, start, out = CTX.Queue(), CTX.Event(), CTX.Queue()
    procs = [
        CTX.Process(
            target=workers.sdk_spend_until_refused,
            args=(pg_url, fake_llm.base_url, f"host-{i}", limit, threads, ready, start, out),
        )
        for i in range(instances)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    start.set()
    results = [out.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert [r["errors"] for r in results] == [[]] * instances
    assert [r["refused"] for r in results] == [threads] * instances  # every thread was refused in the end
    with Monitor(pg_url, instance="probe") as monitor:
        engine = monitor.store.engine
        rows = (
            engine.connection()
            .execute(
                "SELECT instance, started_at, started_at + duration_ms / 1000.0, cost_usd FROM calls"
                " WHERE ok = 1 AND instance <> 'probe'"
            )
            .fetchall()
        )
    assert {r[0] for r in rows} == {f"host-{i}" for i in range(instances)}  # both instances spent
    assert len(rows) == sum(r["ok"] for r in results)
    calls = [(float(r[1]), float(r[2]), float(r[3])) for r in rows]
    total = sum(c for _, _, c in calls) + cost  # and the probe call
    crossed = _crossing([(0.0, 0.0, cost), *calls], limit)
    in_flight = sum(1 for begin, end, _ in calls if begin < crossed < end)
    late = sum(1 for begin, _, _ in calls if begin >= crossed)
    overshoot = (total - limit) / cost
    print(
        f"\nfleet budget: {instances} instances x {threads} threads, limit {limit / cost:.1f} calls;"
        f" spent {total / cost:.1f} calls (overshoot {overshoot:.2f} calls);"
        f" in flight when it was reached: {in_flight}; started after it was reached: {late}"
    )
    assert total >= limit
    assert overshoot <= instances * threads + 1e-9  # at most the calls in flight: one per thread


def _one_call(monitor: Monitor, server: FakeLLMServer) -> float:
    import httpx

    with httpx.Client(transport=monitor.transport()) as client:
        client.post(f"{server.base_url}/v1/chat/completions", json=workers.CHAT).raise_for_status()
    assert monitor.flush(10)
    row: Any = monitor.store.engine.connection().execute("SELECT cost_usd FROM calls").fetchone()
    assert row[0] > 0
    return float(row[0])


@pytest.fixture(autouse=True)
def _no_leftover_children() -> Any:
    yield
    for child in multiprocessing.active_children():
        child.terminate()
