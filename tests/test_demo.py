"""The demo: its app records calls under the providers' real names, and its seeding (a week of history, once).

The seeding tests share one database, seeded once for the module (it makes ~1,800 real calls through the fake
servers): run 1 seeds it and evaluates the demo's alert rules and budgets; run 2 opens it again, seeds nothing
more and serves the app with live traffic. The tests then read the database file with ``sqlite3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from llm_monitor_mw.demo import alerting, build_app
from llm_monitor_mw.demo.calls import TOOLS
from llm_monitor_mw.demo.history import Seeded
from llm_monitor_mw.demo.listeners import PRIVATE_FEATURES, SHIFT_TAG
from llm_monitor_mw.demo.main import new_demo, open_demo, seed_history
from llm_monitor_mw.demo.providers import PROVIDERS
from llm_monitor_mw.demo.scenarios import USERS

DAY = 86400.0
REAL_NAMES = set(PROVIDERS)
HOST_PORT = re.compile(r":\d+$")


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (its lifespan runs: live traffic starts); yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)


def test_demo_app_records_calls(tmp_path: Path) -> None:
    with open_demo(str(tmp_path / "demo.db")) as (monitor, providers):
        demo = new_demo(monitor, providers)
        with served(build_app(demo)) as base:
            response = httpx.get(base + "/chat", params={"q": "hello"}, timeout=30)
            assert response.status_code == 200
            monitor.flush(5)
            data = httpx.get(base + "/monitoring/api/requests", timeout=30).json()
            assert data["total"] >= 1
            item = data["items"][0]
            assert item["provider"] in REAL_NAMES  # not 127.0.0.1:port
            assert item["route"] == "/chat" and item["trace_id"]


# ---- seeding ---------------------------------------------------------------------------------------------------


@dataclass
class Runs:
    """What two starts of the demo on one database did."""

    db: Path
    seeded_at: float
    """When run 1 started seeding (the plan's "now")."""
    first: Seeded
    second: Seeded
    rows_after_first: int
    rows_after_second_seed: int
    last_seeded_id: int
    """The highest call id after run 1 (ids past it are run 2's live calls)."""
    providers_first: set[str]
    hosts_first: set[str]
    active: dict[str, str]
    """Run 1's alert states after one evaluation: key -> state."""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` over the demo's database."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The single value ``sql`` selects."""
        return self.query(sql, params)[0][0]

    def seeded(self, where: str = "1 = 1") -> str:
        """``sql`` condition: a seeded call (run 1's) matching ``where``."""
        return f"id <= {self.last_seeded_id} AND ({where})"


def _count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])


def _names(db: Path, column: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute(f"SELECT DISTINCT {column} FROM calls")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    seeded_at = time.time()
    with open_demo(str(db)) as (monitor, providers):  # run 1: an empty database, seeded
        first = asyncio.run(seed_history(monitor, providers))
        for rule in alerting.RULES:
            monitor.alerts.add_rule(rule)
        for budget in alerting.BUDGETS:
            monitor.alerts.add_budget(budget)
        monitor.alerts.evaluate_now()
        active = {row.key: row.state for row in monitor.alerts.active()}
    rows_after_first = _count(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        last_id = int(conn.execute("SELECT max(id) FROM calls").fetchone()[0])
    providers_first, hosts_first = _names(db, "provider"), _names(db, "host")

    with open_demo(str(db)) as (monitor, providers):  # run 2: a restart (new ports), seeds nothing, serves live
        second = asyncio.run(seed_history(monitor, providers))
        monitor.flush(10)
        rows_after_second_seed = _count(db)
        demo = new_demo(monitor, providers)
        with served(build_app(demo, live_traffic=True)):
            deadline = time.monotonic() + 60
            while _count(db) < rows_after_second_seed + 3:  # live traffic: a step every 3 to 9 s
                assert time.monotonic() < deadline, "no live calls after a restart"
                time.sleep(0.5)
                monitor.flush(5)
        monitor.flush(10)
    return Runs(
        db,
        seeded_at,
        first,
        second,
        rows_after_first,
        rows_after_second_seed,
        last_id,
        providers_first,
        hosts_first,
        active,
    )


def test_the_first_start_seeds_a_week_once(runs: Runs) -> None:
    assert runs.first.steps > 500 and runs.rows_after_first > runs.first.steps
    assert runs.second == Seeded(0, 0.0)
    assert runs.rows_after_second_seed == runs.rows_after_first


def test_a_restarted_demo_keeps_making_live_calls(runs: Runs) -> None:
    live = runs.query("SELECT provider, started_at, tags FROM calls WHERE id > ?", (runs.last_seeded_id,))
    assert len(live) >= 3
    assert {p for p, _, _ in live} <= REAL_NAMES
    assert min(at for _, at, _ in live) > runs.seeded_at  # live calls are not backdated
    assert not any(SHIFT_TAG in json.loads(tags or "{}") for _, _, tags in live)


def test_providers_have_their_real_names_and_stay_stable_across_restarts(runs: Runs) -> None:
    assert runs.providers_first == REAL_NAMES
    assert _names(runs.db, "provider") == runs.providers_first  # after run 2, on other ports
    hosts = _names(runs.db, "host")
    assert hosts == runs.hosts_first
    assert not [h for h in hosts | runs.providers_first if HOST_PORT.search(h or "")]


def test_the_history_spreads_over_the_last_seven_days(runs: Runs) -> None:
    now = runs.seeded_at
    first, last = runs.query(f"SELECT min(started_at), max(started_at) FROM calls WHERE {runs.seeded()}")[0]
    assert 6.8 * DAY < now - first <= 7 * DAY + 60
    assert last < now + 120  # seeded calls end at the latest while seeding
    days = runs.query(
        f"SELECT CAST((? - started_at) / {DAY} AS INTEGER) AS d, count(*) FROM calls WHERE {runs.seeded()} GROUP BY d",
        (now,),
    )
    assert {d for d, n in days if n >= 10} == set(range(7))
    assert runs.one("SELECT count(*) FROM calls WHERE tags LIKE ?", (f"%{SHIFT_TAG}%",)) == 0


def test_content_is_captured_for_some_calls_never_for_the_private_ones(runs: Runs) -> None:
    private = ", ".join(f"'{f}'" for f in sorted(PRIVATE_FEATURES))
    feature = "json_extract(tags, '$.feature')"
    assert runs.one(f"SELECT count(*) FROM calls WHERE {feature} IN ({private})") > 0
    kept = "request_content IS NOT NULL OR response_content IS NOT NULL OR tool_arguments IS NOT NULL"
    assert runs.one(f"SELECT count(*) FROM calls WHERE {feature} IN ({private}) AND ({kept})") == 0
    assert (
        runs.one("SELECT count(*) FROM calls WHERE request_content IS NOT NULL AND response_content IS NOT NULL") > 100
    )


def test_errors_and_retries_are_in_the_history(runs: Runs) -> None:
    statuses = dict(runs.query(f"SELECT status_code, count(*) FROM calls WHERE {runs.seeded()} GROUP BY 1"))
    assert statuses.get(429, 0) > 0
    assert sum(n for s, n in statuses.items() if s is not None and s >= 500) > 0
    assert statuses[200] > 0.8 * sum(statuses.values())
    # a retry is attempt 2+ of one call_id, after a failed attempt 1 of the same call (an error status, or a
    # connection dropped mid-answer)
    retried = runs.query(
        "SELECT r.call_id, f.ok FROM calls r JOIN calls f ON f.call_id = r.call_id AND f.attempt = 1"
        f" WHERE r.attempt > 1 AND r.{runs.seeded()}"
    )
    assert len(retried) > 5
    assert not [call for call, ok in retried if ok]


def test_traces_group_requests_and_named_runs(runs: Runs) -> None:
    per_request = runs.query(
        "SELECT trace_id, count(*) FROM calls WHERE inbound_request_id IS NOT NULL GROUP BY 1 HAVING count(*) >= 3"
    )
    assert per_request, "no inbound request made several calls"
    assert all(tid for tid, _ in per_request)
    named = dict(
        runs.query(
            "SELECT trace_name, count(DISTINCT trace_id) FROM calls WHERE trace_name IS NOT NULL AND"
            " inbound_request_id IS NULL GROUP BY 1"
        )
    )
    assert {"support-agent", "nightly-eval", "ticket-classifier"} <= set(named)
    several = runs.one(
        "SELECT count(*) FROM (SELECT trace_id FROM calls WHERE trace_name IS NOT NULL GROUP BY trace_id"
        " HAVING count(*) >= 3)"
    )
    assert several > 0
    assert runs.one("SELECT count(*) FROM calls WHERE span_name IS NOT NULL") > 0
    # the projection has every seeded trace, with their calls counted
    assert runs.one("SELECT count(*) FROM trace_totals") == runs.one("SELECT count(DISTINCT trace_id) FROM calls")
    assert runs.one("SELECT max(calls) FROM trace_totals") >= 3


def test_tool_calls_are_recorded_with_their_names(runs: Runs) -> None:
    rows = runs.query("SELECT tool_call_count, tool_names FROM calls WHERE tool_call_count > 0")
    assert len(rows) > 20
    names: set[str] = set()
    for count, raw in rows:
        called = json.loads(raw)
        assert len(called) == count
        names.update(called)
    assert len(names) >= 3 and names <= set(TOOLS)


def test_routes_users_tags_sessions_models_and_prices(runs: Runs) -> None:
    routes = _names(runs.db, "route") - {None}
    assert {"/chat/{chat_id}", "/search", "/summarize/{doc_id}", "/agent/{task}"} <= routes
    users = _names(runs.db, '"user"') - {None}
    assert len(users & {u.name for u in USERS}) >= 6
    features = {r[0] for r in runs.query("SELECT DISTINCT json_extract(tags, '$.feature') FROM calls")}
    assert {"chat", "search", "agent", "support", "eval", "backfill"} <= features
    assert runs.one("SELECT count(DISTINCT json_extract(tags, '$.session')) FROM calls") > 20
    assert runs.one("SELECT count(DISTINCT model) FROM calls") >= 8
    assert runs.one("SELECT count(*) FROM calls WHERE cached_tokens > 0") > 0
    assert runs.one("SELECT count(*) FROM calls WHERE reasoning_tokens > 0") > 0
    # priced: the cloud models at list prices, the local ones at zero (known, not unknown)
    assert runs.one("SELECT count(*) FROM calls WHERE provider = 'openai' AND cost_usd > 0") > 100
    ollama = runs.query("SELECT count(*), sum(cost_usd = 0) FROM calls WHERE provider = 'ollama' AND ok = 1")[0]
    assert ollama[0] > 0 and ollama[0] == ollama[1]


def test_an_alert_rule_and_a_budget_fire(runs: Runs) -> None:
    assert runs.active.get("rule:rate limited") == "firing"
    assert runs.active.get("budget:daily spend") == "exceeded"
