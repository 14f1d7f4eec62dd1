"""The dashboard's read side (``store/analytics.py``): roll-ups give exactly what raw rows give."""

from __future__ import annotations

import itertools
import math
import random
import time
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import analytics
from llm_monitor_mw.store.queries import Filters
from tests.seed import insert as seed

NOW = time.time()


def rec(minutes_ago: float, **kw: Any) -> CallRecord:
    return CallRecord(
        started_at=NOW - minutes_ago * 60, provider="openai", operation="chat", endpoint="/v1/chat/completions", **kw
    )


def _random_records(n: int, t0: float, days: float, rng: random.Random) -> list[CallRecord]:
    out = []
    for _ in range(n):
        ok = rng.random() > 0.1
        out.append(
            CallRecord(
                started_at=t0 + rng.uniform(0, days * 86400),
                provider=rng.choice(["openai", "anthropic"]),
                operation="chat",
                endpoint="/v1/chat/completions",
                request_model=rng.choice(["a", "b", None]),
                status_code=200 if ok else rng.choice([429, 500, None]),
                error_type=None if ok else rng.choice(["rate_limit_error", None]),
                error=None if ok else "x",
                input_tokens=rng.choice([10, None]),
                output_tokens=5,
                total_tokens=15,
                cached_tokens=rng.choice([0, 3]),
                cost_usd=rng.choice([0.001, None]),
                duration_ms=rng.lognormvariate(6, 1),
                ttft_ms=rng.choice([None, rng.uniform(10, 500)]),
                route=rng.choice([None, "/a", "/b"]),
                user=rng.choice([None, "u1", "u2", "u3"]),
                tags=rng.choice([{}, {"feature": "x"}, {"feature": "y", "team": "z"}]),
            )
        )
    return out


def test_rollups_answer_exactly_what_raw_rows_answer(tmp_path: Path) -> None:
    rng = random.Random(3)
    t0 = 1_780_000_000.0 + 1234.5  # not aligned to hours or days
    monitor = Monitor(tmp_path / "rollups.db")
    records = _random_records(6000, t0, 12, rng)
    seed(monitor, records[:4000])
    rolled = analytics.Analytics(monitor.db)
    assert rolled.count(Filters(since=t0, until=t0 + 1)) >= 0 and rolled._rolled
    seed(monitor, records[4000:])  # rolled up incrementally on the next read
    raw = analytics.Analytics(monitor.db, use_rollups=False)
    for _ in range(25):
        since = t0 + rng.uniform(-86400, 12 * 86400)
        until = since + rng.choice([rng.uniform(3 * 3600, 86400), rng.uniform(86400, 12 * 86400)])
        for f in (Filters(since=since, until=until), Filters(since=since, until=until, provider="openai", model="a")):
            for step in (0, 3600, 86400):
                a, b = rolled.report(f, step), raw.report(f, step)
                for x, y in ((a.totals, b.totals), *zip(a.series, b.series, strict=True)):
                    assert x["requests"] == y["requests"] and x["errors"] == y["errors"], (f, step)
                    assert x["input_tokens"] == y["input_tokens"] and x["n429"] == y["n429"]
                    assert x["cost_usd"] == pytest.approx(y["cost_usd"])
                    assert x["latency_p95_ms"] == y["latency_p95_ms"] and x["ttft_p50_ms"] == y["ttft_p50_ms"]
                assert [(m["model"], m["requests"]) for m in a.by_model] == [
                    (m["model"], m["requests"]) for m in b.by_model
                ]
            a, b = rolled.report(f, model_latency=True), raw.report(f, model_latency=True)
            assert [(m["model"], m["latency_p95_ms"], m["ttft_p50_ms"]) for m in a.by_model] == [
                (m["model"], m["latency_p95_ms"], m["ttft_p50_ms"]) for m in b.by_model
            ]
            for dim in analytics.DIMENSIONS:
                x, y = rolled.by_dim(f, dim, order="requests"), raw.by_dim(f, dim, order="requests")
                assert [(r["value"], r["requests"], r["errors"]) for r in x] == [
                    (r["value"], r["requests"], r["errors"]) for r in y
                ], dim
            assert rolled.count(f) == raw.count(f)
            assert rolled.count(Filters(since=since, until=until, ok=False)) == raw.count(
                Filters(since=since, until=until, ok=False)
            )
    monitor.close()


def test_plan_covers_the_range_without_overlap() -> None:
    rng = random.Random(5)
    for _ in range(500):
        since = 1_780_000_000 + rng.uniform(0, 86400 * 3)
        until = since + rng.uniform(1, 86400 * 40)
        step = rng.choice([0, 60, 3600, 86400])
        segments = analytics.plan(since, until, step)
        assert segments[0].since == since and segments[-1].until == until
        for a, b in itertools.pairwise(segments):
            assert a.until == b.since
        for s in segments:
            grain = {"raw": 1, "hour": 3600, "day": 86400}[s.source]
            assert s.since < s.until and (s.source == "raw" or (s.since % grain == 0 and s.until % grain == 0))
            assert s.source == "raw" or (step or 86400) % grain == 0  # series buckets never split a roll-up row


def test_percentile_estimates_are_within_five_percent(tmp_path: Path) -> None:
    rng = random.Random(11)
    t0 = 1_780_000_000.0
    records = _random_records(3000, t0, 7, rng)
    monitor = Monitor(tmp_path / "quantiles.db")
    seed(monitor, records)
    a = analytics.Analytics(monitor.db)
    f = Filters(since=t0, until=t0 + 8 * 86400)

    def exact(values: list[float], q: float) -> float:  # nearest rank
        return sorted(values)[max(1, math.ceil(q * len(values))) - 1]

    totals = a.totals(f)
    durations = [r.duration_ms for r in records if r.duration_ms is not None]
    ttfts = [r.ttft_ms for r in records if r.ttft_ms is not None]
    assert totals["latency_p50_ms"] == pytest.approx(exact(durations, 0.5), rel=0.045)
    assert totals["latency_p95_ms"] == pytest.approx(exact(durations, 0.95), rel=0.045)
    assert totals["ttft_p50_ms"] == pytest.approx(exact(ttfts, 0.5), rel=0.045)
    summary = a.summary(Filters())  # the whole recorded range
    assert summary["requests"] == 3000 and summary["latency_p99_ms"] == pytest.approx(exact(durations, 0.99), rel=0.045)
    for row in summary["by_model"]:
        mine = [
            r.duration_ms
            for r in records
            if r.provider == row["provider"] and r.request_model == row["model"] and r.duration_ms is not None
        ]
        assert row["requests"] == sum(
            1 for r in records if r.provider == row["provider"] and r.request_model == row["model"]
        )
        assert row["latency_p95_ms"] == pytest.approx(exact(mine, 0.95), rel=0.045), row
    monitor.close()


def test_attempts_are_found_by_call_id_within_an_hour(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "attempts.db")
    seed(monitor, [rec(10, call_id="x", attempt=1), rec(9, call_id="x", attempt=2), rec(200, call_id="x", attempt=1)])
    a = analytics.Analytics(monitor.db)
    found = a.attempts("x", NOW - 9 * 60)
    assert [r["attempt"] for r in found] == [1, 2]  # the one 3 h away is another call that reused the id
    assert a.attempts("", NOW) == []
    monitor.close()
