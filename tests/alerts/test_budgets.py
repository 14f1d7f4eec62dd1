"""Budgets: spend (written and not yet written), `budget_exceeded(scope)`, and the hard limit in the transport —
under concurrent threads, several processes, and the real openai SDK with its retries."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_monitor_mw import Budget, BudgetExceeded, Monitor
from llm_monitor_mw.alerts.budgets import SpendTracker
from llm_monitor_mw.capture.transport import CallRefused
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.alerts import AlertStore
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.queries import Filters
from tests.alerts import workers
from tests.httplibs import libs_for_anthropic
from tests.seed import insert as seed

CHAT = workers.CHAT
NOW = time.time()


def rec(**kw: Any) -> CallRecord:
    base: dict[str, Any] = {
        "started_at": NOW - 5,
        "provider": "openai",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "request_model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06",
        "status_code": 200,
        "cost_usd": 1.0,
    }
    base.update(kw)
    return CallRecord(**base)


def post(client: httpx.Client, server: FakeLLMServer, **kw: Any) -> httpx.Response:
    response = client.post(f"{server.base_url}/v1/chat/completions", json={**CHAT, **kw})
    response.raise_for_status()
    return response


def cost_of_one_call(monitor: Monitor, server: FakeLLMServer) -> float:
    with httpx.Client(transport=monitor.transport()) as client:
        post(client, server)
    assert monitor.flush(10)
    (row,), _ = monitor.queries.requests(Filters())
    assert row["cost_usd"] > 0
    return row["cost_usd"]


def db_spend(monitor: Monitor) -> tuple[int, float]:
    assert monitor.flush(10)
    engine = monitor.store.engine
    n, total = (
        engine.connection()
        .execute(f"SELECT count(*), {engine.dialect.total('cost_usd')} FROM calls WHERE ok = 1")
        .fetchone()
    )
    return n, total


# ---- spend ----------------------------------------------------------------------------------------------------


def test_unwritten_spend_counts_until_the_database_has_it(monitor: Monitor, store_target: str) -> None:
    written = [0]
    store = AlertStore(open_engine(store_target))  # its own connections, as in another process
    # max_age=0: on PostgreSQL every read goes to the database (SQLite tells when it changed)
    tracker = SpendTracker(Budget("b", 100.0, scope={"user": "*"}), store, lambda: written[0], max_age=0.0)
    seed(monitor, [rec(user="alice", cost_usd=2.0), rec(user="bob", cost_usd=3.0)])
    assert tracker.totals(now=NOW) == {"alice": 2.0, "bob": 3.0}
    fresh = rec(user="alice", cost_usd=0.5)
    tracker.add(fresh)  # priced on the writer thread, not written yet
    tracker.add(rec(user=None, cost_usd=7.0))  # no user: a per-user budget does not cover it
    tracker.add(rec(user="alice", started_at=NOW - 3 * 86400))  # another period
    assert tracker.spent("alice", now=NOW) == 2.5 and tracker.unwritten("alice") == 0.5
    seed(monitor, [fresh])  # in the database, but the tracker's writer has not counted it yet
    assert tracker.spent("alice", now=NOW) == 3.0  # counted twice for a moment, never not at all
    written[0] += 1
    assert tracker.spent("alice", now=NOW, reread=True) == 2.5 and tracker.unwritten("alice") == 0.0
    seed(monitor, [rec(user="alice", cost_usd=1.0)])  # another process's write: seen at the next read
    assert tracker.spent("alice", now=NOW) == 3.5
    store.engine.close()


def test_budget_exceeded_for_apps_that_check_themselves(monitor: Monitor) -> None:
    assert monitor.budget_exceeded() is False and monitor._alerts is None  # nothing configured, nothing created
    seed(
        monitor,
        [
            rec(user="alice", cost_usd=6.0, tags={"customer": "acme"}),
            rec(
                user="bob",
                cost_usd=1.0,
                tags={"customer": "globex"},
                request_model="gpt-4o-mini",
                response_model="gpt-4o-mini",
            ),
        ],
    )
    alerts = monitor.alerts
    alerts.add_budget(Budget("everyone", 100.0))
    alerts.add_budget(Budget("per user", 5.0, scope={"user": "*"}))
    alerts.add_budget(Budget("per customer", 2.0, scope={"tag": "customer:*"}))
    alerts.add_budget(Budget("gpt-4o", 6.0, scope={"model": "gpt-4o"}))
    assert monitor.budget_exceeded() is False
    assert monitor.budget_exceeded({"user": "alice"}) is True
    assert monitor.budget_exceeded({"user": "bob"}) is False
    assert monitor.budget_exceeded({"tag": "customer:acme"}) is True
    assert monitor.budget_exceeded({"tag": "customer:globex"}) is False
    assert monitor.budget_exceeded({"model": "gpt-4o", "user": "bob"}) is True
    assert monitor.budget_exceeded({"model": "gpt-4o-mini", "user": "bob"}) is False
    alerts.add_budget(Budget("tight", 7.0))
    assert monitor.budget_exceeded() is True
    with pytest.raises(ValueError, match=r"scope.team: unknown scope key"):
        monitor.budget_exceeded({"team": "x"})
    status = {(s["name"], s["value"]): s for s in alerts.budget_status()}
    assert status[("per user", "alice")]["state"] == "exceeded" and status[("per user", "bob")]["fraction"] == 0.2
    assert status[("everyone", None)]["spent"] == 7.0 and status[("tight", None)]["state"] == "exceeded"


# ---- the hard limit -------------------------------------------------------------------------------------------


def test_hard_budget_refuses_before_anything_is_sent(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    cost = cost_of_one_call(monitor, fake_llm)
    monitor.alerts.add_budget(Budget("alice daily", 2.5 * cost, scope={"user": "alice"}, hard=True))
    seen = len(fake_llm.requests_seen)
    with httpx.Client(transport=monitor.transport()) as client:
        with monitor.tags(user="alice"):
            post(client, fake_llm)
            post(client, fake_llm)
            post(client, fake_llm)  # spent 2 of 2.5 calls' worth before it: allowed, overshoots by one call
            with pytest.raises(BudgetExceeded) as info:
                post(client, fake_llm)
        post(client, fake_llm)  # other users are not limited by alice's budget
        with monitor.tags(user="bob"):
            post(client, fake_llm)
    assert len(fake_llm.requests_seen) == seen + 5  # the refused call never left the process
    refused = info.value
    assert isinstance(refused, CallRefused) and not isinstance(refused, httpx.HTTPError)
    assert (refused.budget.name, refused.limit, refused.period, refused.value) == (
        "alice daily",
        2.5 * cost,
        "day",
        None,
    )
    assert refused.spent == pytest.approx(3 * cost)
    assert str(refused).startswith(f"LLM call refused: budget 'alice daily' (user=alice) has spent ${3 * cost:.6g}")
    assert f"of its ${2.5 * cost:.6g} per day; it resets at " in str(refused)
    assert monitor.budget_exceeded({"user": "alice"}) and not monitor.budget_exceeded({"user": "bob"})
    assert monitor.flush(10)
    rows = [r for r in monitor.queries.requests(Filters())[0] if r["error_type"] == "BudgetExceeded"]
    assert len(rows) == 1 and rows[0]["status_code"] is None and rows[0]["user"] == "alice"


def test_per_model_and_async(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    cost = cost_of_one_call(monitor, fake_llm)  # a gpt-4o-mini call
    monitor.alerts.add_budget(Budget("mini", 0.5 * cost, scope={"model": "gpt-4o-mini"}, hard=True))

    async def calls() -> list[str]:
        outcomes = []
        async with httpx.AsyncClient(transport=monitor.async_transport()) as client:
            for model in ("gpt-4o-mini", "gpt-4o", "gpt-4o-mini"):
                try:
                    response = await client.post(
                        f"{fake_llm.base_url}/v1/chat/completions", json={**CHAT, "model": model}
                    )
                    outcomes.append(f"{model}:{response.status_code}")
                except BudgetExceeded as exc:
                    outcomes.append(f"{model}:refused by {exc.budget.name}")
        return outcomes

    assert asyncio.run(calls()) == ["gpt-4o-mini:refused by mini", "gpt-4o:200", "gpt-4o-mini:refused by mini"]


def test_concurrent_threads_hold_the_limit(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    """Eight threads race for the last of a budget; the default 0.25 s writer interval leaves records unwritten."""
    threads = 8
    with Monitor(tmp_path / "threads.db") as monitor:
        cost = cost_of_one_call(monitor, fake_llm)
        limit = 40.5 * cost
        monitor.alerts.add_budget(Budget("shared", limit, hard=True))
        seen = len(fake_llm.requests_seen)
        ok, refused, errors = [0] * threads, [0] * threads, []
        start = threading.Barrier(threads)

        def run(i: int) -> None:
            with httpx.Client(transport=monitor.transport()) as client:
                start.wait(10)
                while True:
                    try:
                        post(client, fake_llm)
                        ok[i] += 1
                    except BudgetExceeded:
                        refused[i] += 1
                        return
                    except Exception as exc:
                        errors.append(exc)
                        return

        pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(60)
        assert not errors and refused == [1] * threads
        n, total = db_spend(monitor)
        assert n == 1 + sum(ok) and len(fake_llm.requests_seen) == seen + sum(ok)
        assert total >= limit  # refused only once the budget was used up
        assert total <= limit + threads * cost + 1e-12  # overshoot: at most the calls in flight when it ran out


def test_several_processes_hold_the_limit(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    """Three processes with three threads each, every one with its own Monitor on the same database file."""
    db = str(tmp_path / "shared.db")
    with Monitor(db) as monitor:
        cost = cost_of_one_call(monitor, fake_llm)
    limit = 60.5 * cost
    procs_n, threads = 3, 3
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=workers.spend_until_refused, args=(db, fake_llm.base_url, limit, threads, ready, start, out))
        for _ in range(procs_n)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert [r["errors"] for r in results] == [[]] * procs_n
    assert [r["refused"] for r in results] == [threads] * procs_n
    with Monitor(db) as monitor:
        n, total = db_spend(monitor)
    assert n == 1 + sum(r["ok"] for r in results)
    assert total >= limit
    # every call in flight anywhere when the budget ran out, plus at most one finished-but-unwritten call per thread
    assert total <= limit + 2 * procs_n * threads * cost + 1e-12


# ---- what the SDKs turn the refusal into ------------------------------------------------------------------------


@pytest.mark.sdk
def test_openai_sdk_retries_cannot_reach_the_network(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    cost_of_one_call(monitor, fake_llm)
    monitor.alerts.add_budget(Budget("tiny", 1e-9, hard=True))  # already exceeded
    seen = len(fake_llm.requests_seen)
    client = openai.OpenAI(
        base_url=fake_llm.base_url + "/v1",
        api_key="sk-test",
        http_client=httpx.Client(transport=monitor.transport()),
        max_retries=2,
    )
    with pytest.raises(Exception) as info:  # which one depends on the SDK generation
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
    exc = info.value
    # openai 3.x: BudgetExceeded itself; openai 2.x: APIConnectionError("Connection error.") caused by it
    assert isinstance(exc, BudgetExceeded) or (
        isinstance(exc, openai.APIConnectionError) and isinstance(exc.__cause__, BudgetExceeded)
    ), repr(exc)
    assert len(fake_llm.requests_seen) == seen  # not one request reached the server
    refusals = monitor.alerts.stats()["refused"]
    assert 1 <= refusals <= 3  # the first attempt and at most max_retries retries, each refused locally
    assert monitor.flush(10)
    rows = monitor.queries.requests(Filters(ok=False))[0]
    assert len(rows) == refusals and {r["error_type"] for r in rows} == {"BudgetExceeded"}


@pytest.mark.sdk
def test_anthropic_sdk_wraps_the_refusal_after_local_retries(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    cost_of_one_call(monitor, fake_llm)
    monitor.alerts.add_budget(Budget("tiny", 1e-9, hard=True))
    seen = len(fake_llm.requests_seen)
    lib = libs_for_anthropic()[0]
    client = anthropic.Anthropic(
        base_url=fake_llm.base_url,
        api_key="sk-ant-test",
        http_client=lib.Client(transport=monitor.transport()),
        max_retries=1,
    )
    with pytest.raises(anthropic.APIConnectionError) as info:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=CHAT["messages"])
    assert isinstance(info.value.__cause__, BudgetExceeded)
    assert len(fake_llm.requests_seen) == seen
    assert monitor.alerts.stats()["refused"] == 2  # the first attempt and its one retry, both refused locally


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_budget_exceeded_agrees_with_the_gate_right_after_the_crossing_call(
    monitor: Monitor, fake_llm: FakeLLMServer, hard: bool
) -> None:
    """The writer flushes every 0.25 s; budget_exceeded() must not wait for it (it used to say False for that long
    after the call that used the budget up had returned)."""
    cost = cost_of_one_call(monitor, fake_llm)
    monitor.alerts.add_budget(Budget("b", 3.5 * cost, hard=hard, warn_at=None))
    with httpx.Client(transport=monitor.transport()) as client:
        for _ in range(2):
            post(client, fake_llm)
            assert monitor.budget_exceeded() is False  # 2 and 3 calls' worth of 3.5
        post(client, fake_llm)  # the 4th call's worth: over the limit once it is priced
        started = time.monotonic()
        assert monitor.budget_exceeded() is True
        assert time.monotonic() - started < 0.2  # it had the writer write now, it did not wait for the interval
        if hard:
            with pytest.raises(BudgetExceeded):
                post(client, fake_llm)
