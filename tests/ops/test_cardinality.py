"""``/metrics`` label cardinality: at most ``metrics_max_label_values`` values per label, the rest under ``other``.

Known values (a model or provider that answered OK) first, then the busiest, then by name: a rule over the
cumulative counters alone, so every process makes the same choice and a scrape writes nothing; totals are summed
so that a sum over all label values is still every call. Also: sums that a stored row of 2**63-1 tokens cannot
make overflow.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store.projections import catch_up
from llm_monitor_mw.web.cardinality import OTHER, ValueStats, keep
from tests.ops.helpers import Sample, binary, free_port, key, samples
from tests.seed import insert

HISTOGRAM = "llm_request_duration_seconds"


def rec(model: str, status: int | None, provider: str = "openai", **kw: Any) -> CallRecord:
    error = None if status is not None and status < 400 else "invalid_request_error"
    return CallRecord(
        started_at=time.time(),
        provider=provider,
        operation="chat",
        endpoint="/v1/chat/completions",
        request_model=model,
        status_code=status,
        duration_ms=kw.pop("duration_ms", 40.0),
        error_type=error,
        **kw,
    )


def scrape(monitor: Monitor) -> dict[Sample, float]:
    response = TestClient(monitor.asgi_app()).get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got[key("llm_monitor_database_up")] == 1
    return got


def call_series(got: dict[Sample, float]) -> dict[Sample, float]:
    """The samples about calls (the same in every process), without the per-process ``llm_monitor_*`` ones."""
    return {k: v for k, v in got.items() if k[0].startswith("llm_") and not k[0].startswith("llm_monitor_")}


def values(got: dict[Sample, float], label: str, name: str = "llm_requests_total") -> set[str]:
    return {dict(labels)[label] for n, labels in got if n == name}


def total(got: dict[Sample, float], name: str) -> float:
    return sum(v for (n, _), v in got.items() if n == name)


def by(got: dict[Sample, float], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, labels), v in got.items():
        if n == name:
            out[dict(labels)[label]] += v
    return dict(out)


def promtool_check(text: str) -> None:
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "labels.db", flush_interval=0.05)
    yield mon
    mon.close()


def test_two_thousand_rejected_model_names_fold_into_other(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    known = {"gpt-4o": 3, "gpt-4o-mini": 2, "text-embedding-3-small": 1}
    with httpx.Client(transport=monitor.transport(), base_url=fake_llm.base_url, timeout=10) as client:
        for i in range(2000):  # user-typed model names, rejected by the provider
            r = client.post(
                "/v1/chat/completions",
                json={"model": f"user-typed-{i:04d}", "messages": [{"role": "user", "content": "hi"}]},
                headers={"x-fake-status": "400"},
            )
            assert r.status_code == 400
        for model, n in known.items():
            for _ in range(n):
                r = client.post("/v1/chat/completions", json={"model": model, "messages": []})
                assert r.status_code == 200
    fake_llm.reset()
    assert monitor.flush(30)
    calls = 2000 + sum(known.values())
    app = TestClient(monitor.asgi_app())
    start = time.perf_counter()
    response = app.get("/metrics")
    elapsed = time.perf_counter() - start
    print(f"\n/metrics with 2006 model names: {len(response.content)} bytes in {elapsed * 1000:.0f} ms")
    assert response.status_code == 200
    # Unbounded, this was 4.8 MB (2,002 model values) in 0.6 s; bounded, about 250 kB in 0.06 s.
    assert len(response.content) < 400_000
    assert elapsed < 5
    got = samples(response.text)
    models = values(got, "model")
    assert len(models) == 100 and OTHER in models
    assert set(known) <= models  # every model that answered OK keeps its series
    provider = f"127.0.0.1:{fake_llm.port}"
    for model, n in known.items():
        assert got[key("llm_requests_total", provider=provider, model=model, status="200")] == n
    per_model = by(got, "llm_requests_total", "model")
    shown_typos = models - set(known) - {OTHER}
    assert len(shown_typos) == 96 and all(per_model[m] == 1 for m in shown_typos)
    assert per_model[OTHER] == 2000 - 96
    # Counters and histograms are summed, so totals stay right.
    assert total(got, "llm_requests_total") == calls
    assert total(got, "llm_request_errors_total") == 2000
    assert total(got, f"{HISTOGRAM}_count") == calls
    assert by(got, f"{HISTOGRAM}_count", "model")[OTHER] == 2000 - 96
    other = {"provider": provider, "model": OTHER}
    assert got[key(f"{HISTOGRAM}_bucket", **other, le="+Inf")] == 2000 - 96  # buckets summed too
    assert len(values(got, "model", f"{HISTOGRAM}_bucket")) == 100
    promtool_check(response.text)

    # The next scrape shows the same values, and no series goes down.
    again = samples(app.get("/metrics").text)
    assert values(again, "model") == models
    assert all(again[k] >= v for k, v in got.items() if k[0].startswith("llm_") and "database" not in k[0])


def test_unreachable_hosts_fold_into_provider_other(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    port = free_port()  # nothing listens there, on any 127.x address
    with httpx.Client(transport=monitor.transport(), timeout=5) as client:
        for i in range(150):
            with pytest.raises(httpx.ConnectError):
                client.post(f"http://127.0.{i // 250}.{i % 250 + 2}:{port}/v1/chat/completions", json={"model": "m"})
        r = client.post(fake_llm.base_url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
        assert r.status_code == 200
    assert monitor.flush(30)
    response = TestClient(monitor.asgi_app()).get("/metrics")
    got = samples(response.text)
    providers = values(got, "provider")
    assert len(providers) == 100 and OTHER in providers
    assert f"127.0.0.1:{fake_llm.port}" in providers  # the provider that answered keeps its name
    per_provider = by(got, "llm_requests_total", "provider")
    assert per_provider[OTHER] == 150 - 98
    assert total(got, "llm_requests_total") == 151
    assert by(got, "llm_requests_total", "status") == {"error": 150, "200": 1}
    promtool_check(response.text)


def test_a_configured_limit_of_five(tmp_path: Path) -> None:
    with Monitor(tmp_path / "five.db", flush_interval=0.05, metrics_max_label_values=5) as monitor:
        known = [rec("good-a", 200, cost_usd=0.5, input_tokens=7), rec("good-b", 200), rec("good-b", 200)]
        failing = [rec(f"bad-{i}", status, input_tokens=1) for i, status in enumerate((400, 401, 403, 404, 418, 422))]
        failing += [rec("bad-0", 400)] * 3
        insert(monitor, [*known, *failing, rec("good-a", 500)])
        got = scrape(monitor)
    models = values(got, "model")
    assert models == {"good-a", "good-b", "bad-0", "bad-1", OTHER}  # known, then most requests, then by name
    assert by(got, "llm_requests_total", "model") == {"good-a": 2, "good-b": 2, "bad-0": 4, "bad-1": 1, OTHER: 4}
    statuses = values(got, "status")  # 200, 400, 401, 403, 404, 418, 422, 500: eight values for five places
    assert len(statuses) == 5 and {"200", "400", OTHER} <= statuses
    assert total(got, "llm_requests_total") == 13
    assert total(got, "llm_request_errors_total") == 10
    tokens = by({k: v for k, v in got.items() if ("type", "input") in k[1]}, "llm_tokens_total", "model")
    assert tokens == {"good-a": 7, "good-b": 0, "bad-0": 1, "bad-1": 1, OTHER: 4}
    assert got[key("llm_cost_usd_total", provider="openai", model="good-a")] == 0.5
    assert total(got, f"{HISTOGRAM}_count") == 13


def test_every_process_makes_the_same_choice_from_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "sticky.db"
    first = Monitor(path, flush_interval=0.05, metrics_max_label_values=5)
    insert(first, [rec("known", 200), *(rec(f"f-{c}", 400) for c in "abcdefgh")])
    before = scrape(first)
    assert values(before, "model") == {"known", "f-a", "f-b", "f-c", OTHER}  # ties among failing ones: by name
    # Another worker process (or a restarted one), after f-h became the busiest failing model: both now choose
    # the same values, from the counters alone (documented: f-c's series ends, "other" jumps by its count).
    with Monitor(path, flush_interval=0.05, metrics_max_label_values=5) as second:
        insert(second, [rec("f-h", 400)] * 10)
        after = scrape(second)
        assert call_series(scrape(first)) == call_series(after)
    assert values(after, "model") == {"known", "f-h", "f-a", "f-b", OTHER}
    assert by(after, "llm_requests_total", "model")[OTHER] == 5
    # A newly known model takes the place of a failing one, however busy: known values never give way.
    with Monitor(path, flush_interval=0.05, metrics_max_label_values=5) as third:
        insert(third, [rec("new-known", 200)])
        latest = scrape(third)
    assert values(latest, "model") == {"known", "new-known", "f-h", "f-a", OTHER}
    assert by(latest, "llm_requests_total", "model")[OTHER] == 6
    assert total(latest, "llm_requests_total") == 20
    first.close()


def test_no_fold_below_the_limit_and_other_is_never_invented(monitor: Monitor) -> None:
    insert(monitor, [rec(f"m-{i}", 400) for i in range(100)])
    got = scrape(monitor)
    assert values(got, "model") == {f"m-{i}" for i in range(100)}  # exactly the limit: every value its own


def test_ranking() -> None:
    stats = {
        "failing-busy": ValueStats(requests=50, ok=0),
        "known-quiet": ValueStats(requests=1, ok=1),
        "failing-shown": ValueStats(requests=1, ok=0),
        "failing-b": ValueStats(requests=2, ok=0),
        "failing-a": ValueStats(requests=2, ok=0),
    }
    assert keep(stats, 5) is None
    assert keep(stats, 4) == {"known-quiet", "failing-busy", "failing-a"}  # known, busiest, then by name
    assert keep(stats, 2) == {"known-quiet"}
    stats["failing-shown"] = ValueStats(requests=3, ok=0)
    assert keep(stats, 4) == {"known-quiet", "failing-busy", "failing-shown"}
    assert keep(stats, 1) == frozenset()  # everything under "other"


def test_the_limit_is_checked() -> None:
    with pytest.raises(ValueError, match="metrics_max_label_values"):
        Monitor(":memory:", metrics_max_label_values=0)
    with pytest.raises(TypeError, match="metrics_max_label_values"):
        Monitor(":memory:", metrics_max_label_values="100")  # type: ignore[arg-type]


def test_a_stored_row_of_2_63_tokens_cannot_break_the_counters(monitor: Monitor) -> None:
    engine = monitor.store.engine
    insert(monitor, [rec("m", 200, input_tokens=5)])
    # A row written by an older build, before token counts were validated (SQLite's sum() raised on it), not
    # projected yet: /metrics adds it from the raw row, then the writer's pass counts it; both leave it out.
    columns = "started_at, provider, operation, endpoint, model, status_code, ok, input_tokens, output_tokens"
    engine.write(
        lambda c: c.execute(
            f"INSERT INTO calls ({columns}) VALUES (?, 'openai', 'chat', '/v1', 'm', 200, 1, ?, 3)",
            (time.time(), 2**63 - 1),
        )
    )
    with pytest.raises(sqlite3.Error, match="integer overflow"):
        engine.connection().execute("SELECT sum(input_tokens) FROM calls").fetchone()
    labels = {"provider": "openai", "model": "m"}
    for projected in (False, True):
        if projected:
            assert catch_up(engine).cursor == 2
        got = scrape(monitor)
        # Like the dashboard's sums, the counters leave a figure of 2**53 or more out as unknown (store/values.py).
        assert got[key("llm_tokens_total", **labels, type="input")] == 5
        assert got[key("llm_tokens_total", **labels, type="output")] == 3
        assert got[key("llm_requests_total", **labels, status="200")] == 2
    insert(monitor, [rec("m", 200, input_tokens=9223372036854775807)])  # and adding to a huge counter
    got = scrape(monitor)
    assert got[key("llm_tokens_total", **labels, type="input")] == 5
    assert got[key("llm_requests_total", **labels, status="200")] == 3
