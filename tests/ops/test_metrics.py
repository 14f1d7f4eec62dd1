"""``GET /metrics``: exact names, labels and values from seeded calls and from the real openai SDK; promtool."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.counters import Counters
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.projections import catch_up
from llm_monitor_mw.store.writer import Writer
from tests.httplibs import libs_for_openai
from tests.ops.helpers import Sample, binary, key, samples
from tests.seed import insert

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""The documented bucket boundaries (README), written out here so that changing them is a visible decision."""
TOKEN_TYPES = ("input", "output", "cached", "cache_creation", "reasoning")


def rec(provider: str, model: str | None, status: int | None, duration_ms: float | None, **kw: Any) -> CallRecord:
    return CallRecord(
        started_at=time.time(),
        provider=provider,
        operation="chat",
        endpoint="/v1/chat/completions",
        request_model=model,
        status_code=status,
        duration_ms=duration_ms,
        **kw,
    )


def tokens(i: int, o: int, cached: int = 0, creation: int = 0, reasoning: int = 0) -> dict[str, int]:
    return {
        "input_tokens": i,
        "output_tokens": o,
        "cached_tokens": cached,
        "cache_creation_tokens": creation,
        "reasoning_tokens": reasoning,
    }


SEED = [
    rec("openai", "gpt-4o", 200, 120.0, ttft_ms=80.0, cost_usd=0.01, **tokens(10, 5, cached=2, reasoning=1)),
    rec("openai", "gpt-4o", 200, 2600.0, ttft_ms=300.0, cost_usd=0.02, **tokens(20, 7)),
    rec("openai", "gpt-4o", 429, 30.0, error_type="rate_limit_error"),
    rec("openai", "gpt-4o", None, None, error_type="ConnectError"),
    rec("openai", "gpt-4o", 200, 100.0, error_type="stream_broken"),  # a 200 whose stream broke: an error
    rec("anthropic", "claude-x", 200, 70000.0, cost_usd=0.5, **tokens(100, 50, creation=4)),
    rec("openai", None, 500, 50.0, error_type="server_error"),
]


def hist(name: str, provider: str, model: str, values: list[float]) -> dict[Sample, float]:
    """The exposition samples of one histogram holding ``values`` (seconds), computed from :data:`BOUNDS`."""
    labels = {"provider": provider, "model": model}
    out = {key(f"{name}_bucket", **labels, le=str(b)): sum(v <= b for v in values) for b in BOUNDS}
    out[key(f"{name}_bucket", **labels, le="+Inf")] = len(values)
    out[key(f"{name}_count", provider=provider, model=model)] = len(values)
    out[key(f"{name}_sum", provider=provider, model=model)] = sum(values)
    return out


def per_model(name: str, values: dict[tuple[str, str], float]) -> dict[Sample, float]:
    return {key(name, provider=p, model=m): v for (p, m), v in values.items()}


def token_samples(provider: str, model: str, *counts: int) -> dict[Sample, float]:
    return {
        key("llm_tokens_total", provider=provider, model=model, type=t): n
        for t, n in zip(TOKEN_TYPES, counts, strict=True)
    }


EXPECTED: dict[Sample, float] = {
    key("llm_monitor_database_up"): 1,
    key("llm_requests_total", provider="openai", model="gpt-4o", status="200"): 3,
    key("llm_requests_total", provider="openai", model="gpt-4o", status="429"): 1,
    key("llm_requests_total", provider="openai", model="gpt-4o", status="error"): 1,
    key("llm_requests_total", provider="anthropic", model="claude-x", status="200"): 1,
    key("llm_requests_total", provider="openai", model="unknown", status="500"): 1,
    **per_model(
        "llm_request_errors_total", {("openai", "gpt-4o"): 3, ("anthropic", "claude-x"): 0, ("openai", "unknown"): 1}
    ),
    **per_model(
        "llm_rate_limit_hits_total", {("openai", "gpt-4o"): 1, ("anthropic", "claude-x"): 0, ("openai", "unknown"): 0}
    ),
    **per_model(
        "llm_cost_usd_total", {("openai", "gpt-4o"): 0.03, ("anthropic", "claude-x"): 0.5, ("openai", "unknown"): 0}
    ),
    **token_samples("openai", "gpt-4o", 30, 12, 2, 0, 1),
    **token_samples("anthropic", "claude-x", 100, 50, 0, 4, 0),
    **token_samples("openai", "unknown", 0, 0, 0, 0, 0),
    **hist("llm_request_duration_seconds", "openai", "gpt-4o", [0.12, 2.6, 0.03, 0.1]),
    **hist("llm_request_duration_seconds", "anthropic", "claude-x", [70.0]),
    **hist("llm_request_duration_seconds", "openai", "unknown", [0.05]),
    **hist("llm_time_to_first_token_seconds", "openai", "gpt-4o", [0.08, 0.3]),
}


@pytest.fixture
def seeded(store_target: str) -> Iterator[Monitor]:
    """A monitor on each engine, seeded with :data:`SEED`."""
    mon = Monitor(store_target, flush_interval=0.05)
    insert(mon, SEED)
    yield mon
    mon.close()


def call_samples(text: str) -> dict[Sample, float]:
    """The samples that come from the database (not the per-process ``llm_monitor_*`` figures)."""
    return {k: v for k, v in samples(text).items() if not k[0].startswith("llm_monitor_") or "database" in k[0]}


def scrape(monitor: Monitor) -> str:
    response = TestClient(monitor.asgi_app()).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # text/plain; version=...; charset=utf-8
    return response.text


def test_every_call_metric_exactly(seeded: Monitor) -> None:
    assert call_samples(scrape(seeded)) == pytest.approx(EXPECTED)


def test_types_help_and_histogram_boundaries(seeded: Monitor) -> None:
    text = scrape(seeded)
    for name, kind in (
        ("llm_requests_total", "counter"),
        ("llm_request_errors_total", "counter"),
        ("llm_rate_limit_hits_total", "counter"),
        ("llm_tokens_total", "counter"),
        ("llm_cost_usd_total", "counter"),
        ("llm_request_duration_seconds", "histogram"),
        ("llm_time_to_first_token_seconds", "histogram"),
        ("llm_monitor_queue_depth", "gauge"),
        ("llm_monitor_dropped_records_total", "counter"),
        ("llm_monitor_failed_writes_total", "counter"),
        ("llm_monitor_internal_errors_total", "counter"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("python_info", "gauge"),
    ):
        assert f"\n# TYPE {name} {kind}\n" in text, name
        assert f"\n# HELP {name} " in text, name
    les = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("llm_request_duration_seconds_bucket")
    ]
    assert les[: len(BOUNDS) + 1] == [*map(str, BOUNDS), "+Inf"]


def test_monitor_health_is_per_process(seeded: Monitor) -> None:
    seeded.hooks.internal_errors = 2
    got = samples(scrape(seeded), "llm_monitor_")
    pid = str(os.getpid())
    assert got[key("llm_monitor_written_records_total", pid=pid)] == len(SEED)
    assert got[key("llm_monitor_queue_depth", pid=pid)] == 0
    assert got[key("llm_monitor_dropped_records_total", pid=pid)] == 0
    assert got[key("llm_monitor_failed_writes_total", pid=pid)] == 0
    assert got[key("llm_monitor_internal_errors_total", pid=pid)] == 2
    assert abs(got[key("llm_monitor_last_write_timestamp_seconds", pid=pid)] - time.time()) < 60
    assert "pid" in "".join(line for line in scrape(seeded).splitlines() if line.startswith("# HELP llm_monitor_queue"))


def test_counts_only_new_rows_and_survive_pruning(seeded: Monitor) -> None:
    client = TestClient(seeded.asgi_app())
    assert call_samples(client.get("/metrics").text) == pytest.approx(EXPECTED)
    assert call_samples(client.get("/metrics").text) == pytest.approx(EXPECTED)  # a second scrape adds nothing
    insert(seeded, [rec("openai", "gpt-4o", 200, 400.0, cost_usd=0.25, **tokens(1, 2))])
    # Retention pruning deletes old rows (never the newest): the counters never go down.
    seeded.store.engine.write(lambda conn: conn.execute("DELETE FROM calls WHERE id < (SELECT max(id) FROM calls)"))
    got = call_samples(client.get("/metrics").text)
    expected = dict(EXPECTED)
    expected[key("llm_requests_total", provider="openai", model="gpt-4o", status="200")] += 1
    expected[key("llm_cost_usd_total", provider="openai", model="gpt-4o")] += 0.25
    expected[key("llm_tokens_total", provider="openai", model="gpt-4o", type="input")] += 1
    expected[key("llm_tokens_total", provider="openai", model="gpt-4o", type="output")] += 2
    expected.update(hist("llm_request_duration_seconds", "openai", "gpt-4o", [0.12, 2.6, 0.03, 0.1, 0.4]))
    assert got == pytest.approx(expected)


def test_database_trouble_still_answers_with_database_up_zero(seeded: Monitor) -> None:
    seeded.store.engine.write(lambda conn: conn.execute("ALTER TABLE calls RENAME TO calls_moved"))
    got = samples(scrape(seeded))
    assert got[key("llm_monitor_database_up")] == 0
    assert not any(name.startswith("llm_requests") for name, _ in got)
    assert any(name == "llm_monitor_queue_depth" for name, _ in got)


def _write_in_process(target: str, start: Any, n: int) -> None:
    start.wait(30)
    engine = open_engine(target)
    writer = Writer(engine, lambda r: r, batch_size=7, interval=0.001, instance=f"w{os.getpid()}", project_limit=5)
    writer.start()
    for i in range(n):
        writer.submit(rec("openai", "m", 200, float(i)))
    assert writer.flush(60)
    writer.close()


def test_processes_writing_at_once_never_double_count(store_target: str) -> None:
    """Four processes insert and project at once (small batches and projection chunks, so they interleave): each
    call is counted once, and /metrics of SQLite (the whole file) sums them all."""
    Monitor(store_target).close()  # create the schema once
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_write_in_process, args=(store_target, start, 150)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    engine = open_engine(store_target)
    catch_up(engine)  # a writer may have exited with rows of another still past the cursor
    snap = Counters(engine).snapshot()
    assert [(t.status, t.requests) for t in snap.totals] == [("200", 600)]
    assert [sum(h.counts) for h in snap.histograms] == [600]
    per_instance = {p.pid: Counters(engine).totals(f"w{p.pid}") for p in procs}
    assert all([(t.status, t.requests) for t in totals] == [("200", 150)] for totals in per_instance.values())
    assert snap.last_id == engine.connection().execute("SELECT max(id) FROM calls").fetchone()[0]
    engine.close()


@pytest.mark.sdk
def test_real_openai_sdk_against_the_fake_server(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=fake_llm.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)
    messages: Any = [{"role": "user", "content": "Say hello"}]
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    for _ in range(2):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from the fake LLM."
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_headers={"x-fake-status": "429"})
    assert monitor.flush(10)
    provider = f"127.0.0.1:{fake_llm.port}"
    got = samples(scrape(monitor))
    labels = {"provider": provider, "model": "gpt-4o-mini"}
    assert got[key("llm_requests_total", **labels, status="200")] == 5
    assert got[key("llm_requests_total", **labels, status="429")] == 1
    assert got[key("llm_request_errors_total", **labels)] == 1
    assert got[key("llm_rate_limit_hits_total", **labels)] == 1
    # The fake server: 11 input tokens (2 of them cached), 5 output (1 of them reasoning) per successful call.
    assert [got[key("llm_tokens_total", **labels, type=t)] for t in TOKEN_TYPES] == [55, 25, 10, 0, 5]
    assert got[key("llm_request_duration_seconds_count", **labels)] == 6
    assert got[key("llm_time_to_first_token_seconds_count", **labels)] == 2
    stored = monitor.db.connect().conn.execute("SELECT total(cost_usd), total(duration_ms) FROM calls").fetchone()
    assert stored[0] > 0
    assert got[key("llm_cost_usd_total", **labels)] == pytest.approx(stored[0])
    assert got[key("llm_request_duration_seconds_sum", **labels)] == pytest.approx(stored[1] / 1000)


def test_promtool_accepts_the_exposition(seeded: Monitor, tmp_path: Path) -> None:
    promtool = binary("promtool")
    text = scrape(seeded)
    assert "llm_requests_total{" in text and "process_cpu_seconds_total" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    # And promtool does object to what it should: the check is not a formality.
    bad = "# HELP x_requests x\n# TYPE x_requests counter\nx_requests 1\n"
    result = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0


def test_the_global_registry_is_left_alone(seeded: Monitor) -> None:
    from prometheus_client import REGISTRY, generate_latest

    scrape(seeded)
    seeded.asgi_app()  # a second app for the same monitor: no duplicate-registration error either
    assert b"llm_" not in generate_latest(REGISTRY)
