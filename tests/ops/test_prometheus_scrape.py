"""A real Prometheus server scrapes a real ``uvicorn --workers 4`` app on loopback; PromQL answers are checked.

Each worker records into the shared SQLite file; whichever worker answers a scrape, the counts are those of every
call made by every worker.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.store.counters import LATENCY_BUCKETS_S
from tests.ops.helpers import bearer, binary, free_port, key, samples

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prometheus"
TOKEN = "prometheus-scrape-token-0123456789"
WORKERS = 4
CALLS_PER_REQUEST = 3


class Processes:
    """Subprocesses started by a test, each in its own process group; all killed at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process at teardown
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


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
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\n{on_timeout()}")


def start_app(processes: Processes, tmp: Path, fake: FakeLLMServer) -> str:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LLM_MONITOR_TEST_DB": str(tmp / "shared.db"),
        "LLM_MONITOR_TEST_FAKE_URL": fake.base_url,
        "LLM_MONITOR_TEST_TOKEN": TOKEN,
        "LLM_MONITOR_TEST_PASSWORD": "app-password",
    }
    args = [sys.executable, "-m", "uvicorn", "tests.ops.multiworker_app:app", "--host", "127.0.0.1"]
    processes.start("app", [*args, "--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"], env)
    base = f"http://127.0.0.1:{port}"
    wait_for(
        "the app",
        lambda: httpx.get(f"{base}/monitoring/health", headers=bearer(TOKEN), timeout=5).status_code == 200,
        60,
        lambda: processes.log("app"),
    )
    return base


def make_calls(base: str) -> tuple[int, int, set[int]]:
    """Hit ``/work`` (a new connection each time, several at once) until every worker has served some calls."""
    calls = streamed = 0
    pids: set[int] = set()

    def one(_: int) -> dict[str, Any]:
        response = httpx.get(f"{base}/work", params={"n": CALLS_PER_REQUEST}, timeout=30)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        for _ in range(25):
            for result in pool.map(one, range(16)):
                calls += result["calls"]
                streamed += result["streamed"]
                pids.add(result["pid"])
            if len(pids) == WORKERS:
                break
    return calls, streamed, pids


def start_prometheus(processes: Processes, tmp: Path, target: str) -> str:
    """Run Prometheus with ``examples/prometheus`` (scrape config, token file, alert rules), scraping every second."""
    port = free_port()
    config = (EXAMPLES / "prometheus.yml").read_text()
    for old, new in (
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("scrape_timeout: 10s", "scrape_timeout: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
    ):
        assert config.count(old) == 1, old
        config = config.replace(old, new)
    config, n = re.subn(r"- targets: \[.*\]", f'- targets: ["{target}"]', config)
    assert n == 1
    (tmp / "prometheus.yml").write_text(config)
    (tmp / "llm-monitor.token").write_text(TOKEN + "\n")
    shutil.copy(EXAMPLES / "alerts.yml", tmp / "alerts.yml")
    processes.start(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    base = f"http://127.0.0.1:{port}"
    wait_for("Prometheus", lambda: httpx.get(f"{base}/-/ready", timeout=5).status_code == 200, 60)
    return base


def promql(base: str, query: str) -> float | None:
    """The single value of an instant query, or ``None`` while it has no result."""
    response = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def histogram_quantile(q: float, cumulative: list[float]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative counts for :data:`LATENCY_BUCKETS_S` + ``+Inf``."""
    bounds = [*LATENCY_BUCKETS_S, math.inf]
    rank = q * cumulative[-1]
    b = next(i for i, c in enumerate(cumulative) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    start, below = (0.0, 0.0) if b == 0 else (bounds[b - 1], cumulative[b - 1])
    return start + (bounds[b] - start) * (rank - below) / (cumulative[b] - below)


@pytest.mark.timeout(300)
def test_prometheus_scraping_four_workers_counts_every_call(
    processes: Processes, tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    binary("prometheus")
    app = start_app(processes, tmp_path, fake_llm)
    calls, streamed, pids = make_calls(app)
    assert len(pids) == WORKERS, f"only workers {pids} served calls"

    # Whichever worker answers a scrape, it reports every call of every worker.
    def scrapes_agree() -> bool:
        seen: dict[str, float] = {}
        for _ in range(24):
            text = httpx.get(f"{app}/monitoring/metrics", headers=bearer(TOKEN), timeout=10).text
            got = samples(text)
            pid = next(dict(labels)["pid"] for name, labels in got if name == "llm_monitor_queue_depth")
            seen[pid] = sum(v for (name, _), v in got.items() if name == "llm_requests_total")
        return len(seen) >= 2 and set(seen.values()) == {calls}

    wait_for(f"every worker's scrape to report {calls} calls", scrapes_agree, 60)

    prometheus = start_prometheus(processes, tmp_path, app.removeprefix("http://"))
    wait_for(
        f"sum(llm_requests_total) == {calls}",
        lambda: promql(prometheus, "sum(llm_requests_total)") == calls,
        60,
        lambda: processes.log("prometheus") + str(httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()),
    )
    assert promql(prometheus, 'up{job="llm-app"}') == 1

    def rules_evaluated() -> bool:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == 6
        return all(rule["health"] == "ok" for rule in rules)

    wait_for("the example alert rules to evaluate", rules_evaluated, 30)
    assert promql(prometheus, "count(ALERTS)") is None  # every call succeeded, quickly and cheaply
    assert promql(prometheus, 'sum(llm_requests_total{status="200",model="gpt-4o-mini"})') == calls
    assert promql(prometheus, "sum(llm_request_duration_seconds_count)") == calls
    assert promql(prometheus, "sum(llm_time_to_first_token_seconds_count)") == streamed
    # The fake server: 11 input tokens and 5 output tokens per call.
    assert promql(prometheus, 'sum(llm_tokens_total{type="input"})') == 11 * calls
    assert promql(prometheus, 'sum(llm_tokens_total{type="output"})') == 5 * calls

    text = httpx.get(f"{app}/monitoring/metrics", headers=bearer(TOKEN), timeout=10).text
    got = samples(text)
    labels = dict(provider=f"127.0.0.1:{fake_llm.port}", model="gpt-4o-mini")
    cumulative = [
        got[key("llm_request_duration_seconds_bucket", **labels, le=le)]
        for le in [*(str(b) for b in LATENCY_BUCKETS_S), "+Inf"]
    ]
    p95 = promql(prometheus, "histogram_quantile(0.95, sum by (le) (llm_request_duration_seconds_bucket))")
    assert p95 == pytest.approx(histogram_quantile(0.95, cumulative), rel=1e-9)
    cost = promql(prometheus, "sum(llm_cost_usd_total)")
    assert cost is not None and cost > 0
    assert cost == pytest.approx(got[key("llm_cost_usd_total", **labels)], rel=1e-9)
