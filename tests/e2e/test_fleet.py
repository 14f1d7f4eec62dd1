"""Fleet behaviours end to end: several instances (separate processes, each a real app under uvicorn on 127.0.0.1
with its own ``Monitor(pg_url, instance=...)``), one PostgreSQL database, real openai SDK calls to the bundled fake
LLM. What every instance shows, what each one's ``/metrics`` counts, and what a database that is down or slow does
to the host (nothing), to the records (queued, then dropped and counted) and to exit (bounded)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.e2e.proxy import TcpProxy
from tests.ops.helpers import basic, bearer, binary, free_port, samples

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "fleet-dashboard-password"
TOKEN = "fleet-scrape-token-0123456789abcdef"
AUTH = basic("admin", PASSWORD)
OPS = bearer(TOKEN)


class Instance:
    """One instance of the fleet: ``uvicorn tests.e2e.fleet_app:app`` in a process group of its own."""

    def __init__(self, name: str, dsn: str, fake_url: str, log: Path, *, max_queue: int | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "E2E_DSN": dsn,
            "E2E_INSTANCE": name,
            "E2E_FAKE_URL": fake_url,
            "E2E_PASSWORD": PASSWORD,
            "E2E_TOKEN": TOKEN,
        }
        if max_queue is not None:
            env["E2E_MAX_QUEUE"] = str(max_queue)
        args = [sys.executable, "-m", "uvicorn", "tests.e2e.fleet_app:app", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--log-level", "warning"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(
            f"{self.name} to answer /health",
            lambda: self.get("/monitoring/health", headers=OPS, timeout=5).status_code == 200,
            timeout,
            self.tail,
        )

    def get(self, path: str, *, headers: dict[str, str] | None = None, timeout: float = 30, **params: Any) -> Any:
        return httpx.get(self.base + path, params=params, headers=AUTH if headers is None else headers, timeout=timeout)

    def work(self, n: int) -> list[float]:
        """Make ``n`` LLM calls in the host app; how long each took (ms), measured in the host."""
        response = self.get("/work", n=n, headers={})
        response.raise_for_status()
        assert response.json()["instance"] == self.name
        return list(response.json()["ms"])

    def stats(self) -> dict[str, Any]:
        response = self.get("/monitoring/api/stats")
        response.raise_for_status()
        return dict(response.json())

    def settled(self, made: int, timeout: float = 30) -> dict[str, Any]:
        """Wait until every call made is accounted for (written or dropped) and nothing is queued."""

        def done() -> dict[str, Any] | None:
            s = self.stats()
            return s if s["queued"] == 0 and s["written"] + s["dropped"] + s["failed"] >= made else None

        result: dict[str, Any] = wait_for(f"{self.name} to write its records", done, timeout, self.tail)
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Starts instances (all stopped at teardown)."""
    started: list[Instance] = []

    def start(name: str, dsn: str, fake_url: str, **kwargs: Any) -> Instance:
        instance = Instance(name, dsn, fake_url, tmp_path / f"{name}.log", **kwargs)
        started.append(instance)
        return instance

    try:
        yield start
    finally:
        for instance in started:
            instance.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float, on_timeout: Callable[[], str] = str) -> Any:
    """Poll ``check()`` until it returns something truthy (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\n{on_timeout()}")


def via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by ``127.0.0.1:port`` (the proxy)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{userinfo}127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


def target_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def rows_by_instance(pg_url: str) -> dict[str | None, int]:
    with psycopg.connect(pg_url) as conn:
        return dict(conn.execute("SELECT instance, count(*) FROM calls GROUP BY instance").fetchall())


def requests_total(text: str) -> float:
    """The sum of ``llm_requests_total`` over every label set of one exposition."""
    return sum(v for (name, _), v in samples(text).items() if name == "llm_requests_total")


def monitor_figure(text: str, name: str) -> float:
    (value,) = [v for (n, _), v in samples(text, "llm_monitor_").items() if n == name]
    return value


def promtool_check(text: str) -> None:
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def page_total(html: str) -> int:
    """The request count the requests page shows (``<strong>N</strong> requests``)."""
    match = re.search(r'<div class="count"><strong>([\d,]+)</strong> request', html)
    assert match, html[-2000:]
    return int(match.group(1).replace(",", ""))


def kpi(html: str, label: str) -> int:
    """A whole-number KPI of the overview page."""
    match = re.search(rf'<div class="kpi-label">{label}</div>\s*<div class="kpi-value">([\d,]+)</div>', html)
    assert match, html[-2000:]
    return int(match.group(1).replace(",", ""))


# ---- 1. what every instance shows ---------------------------------------------------------------------------------


def test_every_instance_shows_the_fleet_and_counts_its_own(
    pg_url: str, fake_llm: FakeLLMServer, fleet: Callable[..., Instance]
) -> None:
    """Three instances make 3, 5 and 7 calls. Every row names its instance (and the route, through the attribution
    middleware); the API and the dashboard of any instance show all 15 calls, and ``instance=web-2`` narrows them
    to web-2's 5; ``/metrics`` of each counts that instance's own calls (the sum over the fleet is 15) and promtool
    accepts each exposition."""
    made = {"web-1": 3, "web-2": 5, "web-3": 7}
    instances = [fleet(name, pg_url, fake_llm.base_url) for name in made]
    for instance in instances:
        instance.wait_ready()
    for instance in instances:
        assert len(instance.work(made[instance.name])) == made[instance.name]
    for instance in instances:
        s = instance.settled(made[instance.name])
        assert (s["written"], s["dropped"], s["failed"]) == (made[instance.name], 0, 0)

    assert rows_by_instance(pg_url) == made
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT DISTINCT route FROM calls").fetchall() == [("/work",)]

    total = sum(made.values())
    for instance in instances:
        summary = instance.get("/monitoring/api/summary").json()
        assert summary["requests"] == total, (instance.name, summary)
        listed = instance.get("/monitoring/api/requests", limit=1000).json()
        assert listed["total"] == total
        assert {r["instance"] for r in listed["items"]} == set(made)
        assert instance.get("/monitoring/api/summary", instance="web-2").json()["requests"] == 5
        narrowed = instance.get("/monitoring/api/requests", instance="web-2", limit=1000).json()
        assert narrowed["total"] == 5
        assert [r["instance"] for r in narrowed["items"]] == ["web-2"] * 5
        page = instance.get("/monitoring/requests")
        assert page.status_code == 200
        assert page_total(page.text) == total
        assert page_total(instance.get("/monitoring/requests", instance="web-2").text) == 5
        assert page_total(instance.get("/monitoring/requests", instance="nobody").text) == 0
        assert kpi(instance.get("/monitoring/").text, "Requests") == total
        assert kpi(instance.get("/monitoring/", instance="web-2").text, "Requests") == 5

    scraped = {}
    for instance in instances:
        response = instance.get("/monitoring/metrics", headers=OPS)
        assert response.status_code == 200
        promtool_check(response.text)
        scraped[instance.name] = requests_total(response.text)
        assert monitor_figure(response.text, "llm_monitor_database_up") == 1
        assert monitor_figure(response.text, "llm_monitor_written_records_total") == made[instance.name]
    assert scraped == made
    assert sum(scraped.values()) == total


# ---- 2. a database that is down or slow -----------------------------------------------------------------------------

MAX_QUEUE = 20


def p50(values: list[float]) -> float:
    return statistics.median(values)


def health(instance: Instance) -> tuple[int, dict[str, Any], float]:
    began = time.perf_counter()
    response = instance.get("/monitoring/health", headers=OPS, timeout=30)
    return response.status_code, response.json(), time.perf_counter() - began


def test_a_database_that_is_down_never_reaches_the_host(
    pg_url: str, fake_llm: FakeLLMServer, fleet: Callable[..., Instance]
) -> None:
    """The instance reaches PostgreSQL through a proxy the test cuts. While it is down the host's calls succeed as
    fast as before; records queue (``max_queue`` 20), then are dropped and counted in ``stats()``, ``/metrics`` and
    ``/health`` (503, naming the database and the full queue). Once it is back the writer reconnects and every
    queued record arrives: made = written + dropped, exactly, and the database holds the written ones."""
    with TcpProxy(target_of(pg_url)) as proxy:
        instance = fleet("web-1", via(pg_url, proxy.port), fake_llm.base_url, max_queue=MAX_QUEUE)
        instance.wait_ready()
        instance.work(10)  # warm up: connections, the SDK, the fake
        before: list[float] = []
        for made in range(20, 60, 10):  # in bursts the small queue holds: nothing is dropped yet
            before += instance.work(10)
            assert instance.settled(made)["dropped"] == 0

        proxy.down()
        during = instance.work(40) + instance.work(40)
        made = 130
        s = instance.stats()
        assert s["queued"] == MAX_QUEUE  # the writer holds at most one batch besides, retrying it
        assert s["dropped"] >= 80 - MAX_QUEUE - 40, s  # whatever the writer's batch did not take
        assert s["written"] == 50 and s["failed"] == 0, s
        status, body, took = health(instance)
        assert status == 503, body
        assert body["status"] == "unhealthy"
        assert "database unreachable" in body["problems"], body
        assert "writer queue full: records are being dropped" in body["problems"], body
        assert body["database"]["reachable"] is False and body["database"]["error"], body
        assert body["writer"]["dropped"] == s["dropped"] and body["writer"]["queue_depth"] == MAX_QUEUE
        assert took < 3, f"/health took {took:.2f} s with the database down"
        metrics = instance.get("/monitoring/metrics", headers=OPS)
        assert metrics.status_code == 200
        promtool_check(metrics.text)
        assert monitor_figure(metrics.text, "llm_monitor_database_up") == 0
        assert monitor_figure(metrics.text, "llm_monitor_dropped_records_total") == s["dropped"]
        assert monitor_figure(metrics.text, "llm_monitor_queue_depth") == MAX_QUEUE
        dropped = s["dropped"]

        proxy.up()
        s = instance.settled(made)
        assert s["dropped"] == dropped  # nothing more was lost once the database was back
        assert (s["written"] + s["dropped"], s["failed"], s["queued"]) == (made, 0, 0), s
        assert rows_by_instance(pg_url) == {"web-1": s["written"]}
        status, body, _ = health(instance)
        assert (status, body["status"], body["problems"]) == (200, "ok", []), body
        print(
            f"\nhost call p50: {p50(before):.2f} ms before, {p50(during):.2f} ms with the database down;"
            f" written {s['written']}, dropped {s['dropped']} of {made}; /health took {took * 1000:.0f} ms"
        )
        assert p50(during) <= 3 * p50(before) + 5, (p50(before), p50(during))


def test_a_database_that_does_not_answer_never_reaches_the_host(
    pg_url: str, fake_llm: FakeLLMServer, fleet: Callable[..., Instance]
) -> None:
    """The proxy swallows every connection (a dropped route: connects hang until their timeout). The host's calls
    are as fast as before; ``/health`` still answers within its bound, 503, saying the database does not answer;
    once the route is back the records arrive."""
    with TcpProxy(target_of(pg_url)) as proxy:
        instance = fleet("web-1", via(pg_url, proxy.port), fake_llm.base_url, max_queue=MAX_QUEUE)
        instance.wait_ready()
        instance.work(10)
        before: list[float] = []
        for made in range(20, 60, 10):
            before += instance.work(10)
            assert instance.settled(made)["dropped"] == 0

        proxy.blackhole()
        during: list[float] = []
        for _ in range(4):
            during += instance.work(10)
        made += 40
        status, body, took = health(instance)
        assert status == 503, body
        assert body["problems"][0] == "database not answering within 2 s", body
        assert body["database"]["reachable"] is False and "no answer within 2 s" in body["database"]["error"]
        assert took < 3, f"/health took {took:.2f} s with the database not answering"
        again = health(instance)
        assert again[0] == 503 and again[2] < 3  # the next check waits for the same probe, bounded the same way
        s = instance.stats()
        assert s["written"] == 50 and s["failed"] == 0, s

        proxy.up()
        s = instance.settled(made)
        assert (s["written"] + s["dropped"], s["failed"], s["queued"]) == (made, 0, 0), s
        assert rows_by_instance(pg_url) == {"web-1": s["written"]}
        wait_for("/health to recover", lambda: health(instance)[0] == 200, 15, instance.tail)
        print(
            f"\nhost call p50: {p50(before):.2f} ms before, {p50(during):.2f} ms with the database not answering;"
            f" written {s['written']}, dropped {s['dropped']} of {made}; /health took {took * 1000:.0f} ms"
        )
        assert p50(during) <= 3 * p50(before) + 5, (p50(before), p50(during))


def test_a_slow_database_never_reaches_the_host(
    pg_url: str, fake_llm: FakeLLMServer, fleet: Callable[..., Instance]
) -> None:
    """The proxy delays every chunk by 50 ms each way (each statement costs 100 ms more). The host's calls are as
    fast as before; every record is written (the small queue holds what the slow transactions have not taken yet,
    or drops and counts it): made = written + dropped."""
    with TcpProxy(target_of(pg_url)) as proxy:
        instance = fleet("web-1", via(pg_url, proxy.port), fake_llm.base_url, max_queue=MAX_QUEUE)
        instance.wait_ready()
        instance.work(10)
        before: list[float] = []
        for made in range(20, 60, 10):
            before += instance.work(10)
            assert instance.settled(made)["dropped"] == 0

        proxy.delay = 0.05
        began = time.monotonic()
        during: list[float] = []
        for _ in range(4):
            during += instance.work(10)
        made += 40
        s = instance.settled(made, timeout=40)
        slow_for = time.monotonic() - began
        proxy.delay = 0
        assert (s["written"] + s["dropped"], s["failed"], s["queued"]) == (made, 0, 0), s
        assert rows_by_instance(pg_url) == {"web-1": s["written"]}
        print(
            f"\nhost call p50: {p50(before):.2f} ms before, {p50(during):.2f} ms with a slow database;"
            f" written {s['written']}, dropped {s['dropped']} of {made}; settled after {slow_for:.1f} s"
        )
        assert p50(during) <= 3 * p50(before) + 5, (p50(before), p50(during))


# ---- 3. exit with the database down ---------------------------------------------------------------------------------

EXIT_SLACK_S = 3.0
"""How much longer than the writer's close timeout a process may take to exit with its database down."""
HANG_S = 25.0
"""How long the test waits for the process before it kills it."""


def exit_time(dsn: str, fake_url: str, cut: Callable[[], None], how: str, tmp: Path) -> tuple[float, int, str]:
    """Run ``tests.e2e.exit_worker``; cut the database once it is ready; how long it took to exit after its calls
    (seconds), how many records it had queued, and its output."""
    args = [sys.executable, "-m", "tests.e2e.exit_worker", dsn, fake_url, "30", how]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    err = open(tmp / f"exit-{how}.err", "w+b")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == b"ready", err.read()
        cut()
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        line = proc.stdout.readline().split()
        began = time.monotonic()
        assert line[:1] == [b"exiting"], line
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(HANG_S + 5)
        took = time.monotonic() - began
        err.seek(0)
        return took, int(line[1]), err.read().decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        err.close()


@pytest.mark.parametrize("how", ["exit", "close"])
@pytest.mark.parametrize("outage", ["refused", "not_answering"])
def test_exit_never_hangs_on_a_database_that_is_down(
    pg_url: str, fake_llm: FakeLLMServer, tmp_path: Path, outage: str, how: str
) -> None:
    """A process with records queued for a database that refuses connections (or never answers them) exits within
    the writer's close timeout (plus :data:`EXIT_SLACK_S`), at interpreter exit and through ``monitor.close()``."""
    with TcpProxy(target_of(pg_url)) as proxy:
        cut = proxy.down if outage == "refused" else proxy.blackhole
        took, queued, log = exit_time(via(pg_url, proxy.port), fake_llm.base_url, cut, how, tmp_path)
    print(f"\n{outage}, {how}: {queued} records queued, exited after {took:.2f} s")
    assert queued > 0
    # the writer gives up at its close deadline (close_at_exit: 5 s; monitor.close(): 10 s): what is left is
    # dropped and counted, and a write still retrying the unreachable database stops at its next retry
    bound = (5.0 if how == "exit" else 10.0) + EXIT_SLACK_S
    assert took < bound, f"exit took {took:.1f} s (bound {bound:g} s) with {queued} records queued\n{log}"
