"""``llm-monitor reprice``: stored costs recomputed, and every projection equal to one rebuilt from the raw rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_monitor_mw.pricing import Pricer
from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import Store
from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.projections import catch_up

from .helpers import DAY, HOUR, NOW, assert_user_error, insert_raw, record, rows, run, seed

PROJECTIONS = {
    "rollup_calls_hour": ("ts", "provider", "model"),
    "rollup_calls_day": ("ts", "provider", "model"),
    "rollup_dims_hour": ("ts", "dim", "value"),
    "rollup_dims_day": ("ts", "dim", "value"),
    "trace_totals": ("trace_id",),
    "counter_totals": ("instance", "provider", "model", "status"),
    "rollup_latency_hour": ("ts", "metric", "hb"),
    "rollup_quantiles_day": ("ts", "metric"),
}
"""Every projection holding a cost (and two that hold none, which must not change)."""
REBUILT = (
    "rollup_calls_hour",
    "rollup_calls_day",
    "rollup_latency_models_hour",
    "rollup_latency_models_day",
    "rollup_latency_hour",
    "rollup_latency_day",
    "rollup_quantiles_hour",
    "rollup_quantiles_day",
    "rollup_dims_hour",
    "rollup_dims_day",
    "trace_totals",
    "counter_totals",
    "counter_latency",
)
OVERRIDES = {"gpt-4o-mini": {"input": 100.0, "output": 200.0, "cache_read": 10.0}}


def _calls(start: float, n: int) -> list[CallRecord]:
    """A mix: OpenAI with tiers and cache reads, Anthropic with 5-minute and 1-hour cache writes, an unknown model,
    old (wrong) costs and none, several traces, users, routes, tags and instances, spread over three days."""
    out = []
    for i in range(n):
        at = start + i * 7 * 60  # every 7 minutes
        kind = i % 5
        common: dict[str, object] = {
            "trace_id": f"t{i // 4}",
            "user": f"u{i % 3}",
            "route": "/chat/{id}" if i % 2 else "/search",
            "tags": {"feature": f"f{i % 2}"},
            "instance": f"host{i % 2}",
            "cost_usd": None if i % 4 == 0 else 0.001 * i,
            "duration_ms": 100.0 + i,
        }
        if kind == 0:
            rec = record(at, request_model="gpt-4o-mini", input_tokens=1_000 + i, output_tokens=50, cached_tokens=400)
        elif kind == 1:
            rec = record(
                at, request_model="o3", service_tier="flex", input_tokens=3_000, output_tokens=900, reasoning_tokens=600
            )
        elif kind == 2:
            rec = record(
                at,
                provider="anthropic",
                endpoint="/v1/messages",
                request_model="claude-opus-4-1",
                input_tokens=20_000,
                output_tokens=300,
                cached_tokens=5_000,
                cache_creation_tokens=8_000,
                cache_write_5m_tokens=3_000,
                cache_write_1h_tokens=5_000,
            )
        elif kind == 3:
            rec = record(at, request_model="gpt-5", service_tier="priority", input_tokens=500, output_tokens=100)
        else:
            rec = record(at, request_model="no-such-model-xyz", input_tokens=10, output_tokens=5)
        for key, value in common.items():
            setattr(rec, key, value)
        rec.total_tokens = (rec.input_tokens or 0) + (rec.output_tokens or 0)
        out.append(rec)
    return out


def _snapshot(target: str) -> dict[str, dict[tuple, tuple]]:
    snap = {}
    for table, keys in PROJECTIONS.items():
        got = rows(target, f"SELECT * FROM {table} ORDER BY {', '.join(_q(k) for k in keys)}")
        columns = [r[0] for r in _columns(target, table)]
        index = [columns.index(k) for k in keys]
        kept = [i for i, c in enumerate(columns) if c != "id"]  # a serial id is no figure
        snap[table] = {tuple(r[i] for i in index): tuple(r[i] for i in kept) for r in got}
    return snap


def _columns(target: str, table: str) -> list[tuple]:
    if target.startswith("postgres"):
        sql = "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position"
        return rows(target, sql, (table,))
    return [(r[1],) for r in rows(target, f"PRAGMA table_info({table})")]


def _q(column: str) -> str:
    return '"user"' if column == "user" else column


def _rebuild(target: str) -> None:
    """Every projection from scratch: emptied, the cursor back at 0, the projection pass over all rows."""
    engine = open_engine(target)
    try:

        def reset(conn: object) -> None:
            for table in REBUILT:
                conn.execute(f"DELETE FROM {table}")  # type: ignore[attr-defined]
            conn.execute("UPDATE rollup_state SET last_id = 0 WHERE name = 'calls'")  # type: ignore[attr-defined]

        engine.write(reset)
        catch_up(engine)
    finally:
        engine.close()


def _same(after: dict[str, dict[tuple, tuple]], rebuilt: dict[str, dict[tuple, tuple]]) -> None:
    for table in PROJECTIONS:
        assert after[table].keys() == rebuilt[table].keys(), table
        for key, row in after[table].items():
            other = rebuilt[table][key]
            for a, b in zip(row, other, strict=True):
                if isinstance(a, float) or isinstance(b, float):
                    assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (table, key, row, other)
                else:
                    assert a == b, (table, key, row, other)


def _expected_costs(records: list[CallRecord], pricer: Pricer) -> list[float | None]:
    return [pricer.price(r) if pricer.price(r) is not None else r.cost_usd for r in records]


def _assert_costs(stored: list[float | None], want: list[float | None]) -> None:
    assert len(stored) == len(want)
    for got, expected in zip(stored, want, strict=True):
        assert (got is None) == (expected is None), (got, expected)
        if got is not None:
            assert got == pytest.approx(expected, rel=1e-12)


def test_reprice_updates_costs_and_every_projection(cli: Path, tmp_path: Path, store_target: str) -> None:
    start = NOW - 3 * DAY
    projected_calls = _calls(start, 500)
    backlog = _calls(NOW - 2 * HOUR, 15)  # written but not projected yet: the pass counts them at their new cost
    seed(store_target, projected_calls).close()
    engine = open_engine(store_target)
    insert_raw(engine, backlog)
    engine.close()
    before = rows(store_target, "SELECT id, cost_usd FROM calls ORDER BY id")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(OVERRIDES))

    result = run(cli, "reprice", store_target, "--prices", prices, "--batch-size", "64")

    assert result.returncode == 0, result.stderr
    assert "costs changed" in result.stdout and "515 looked at" in result.stdout, result.stdout
    assert "kept the stored cost of 103 calls whose model has no price now" in result.stdout, result.stdout
    stored = [c for _, c in rows(store_target, "SELECT id, cost_usd FROM calls ORDER BY id")]
    want = _expected_costs(projected_calls + backlog, Pricer(OVERRIDES))
    _assert_costs(stored, want)
    assert stored != [c for _, c in before]
    engine = open_engine(store_target)
    catch_up(engine)
    engine.close()
    after = _snapshot(store_target)
    assert any(row for row in after["counter_totals"].values())
    _rebuild(store_target)
    _same(after, _snapshot(store_target))


def test_reprice_since_leaves_older_calls(cli: Path, tmp_path: Path, store_target: str) -> None:
    calls = _calls(NOW - 3 * DAY, 200)
    seed(store_target, calls).close()
    cutoff = NOW - 3 * DAY + 100 * 7 * 60
    old_costs = rows(store_target, "SELECT cost_usd FROM calls WHERE started_at < ? ORDER BY id", (cutoff,))
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(OVERRIDES))

    result = run(cli, "reprice", store_target, "--since", str(cutoff), "--prices", prices)

    assert result.returncode == 0, result.stderr
    assert "100 looked at" in result.stdout, result.stdout
    assert rows(store_target, "SELECT cost_usd FROM calls WHERE started_at < ? ORDER BY id", (cutoff,)) == old_costs
    newer = [
        c for (c,) in rows(store_target, "SELECT cost_usd FROM calls WHERE started_at >= ? ORDER BY id", (cutoff,))
    ]
    _assert_costs(newer, _expected_costs(calls[100:], Pricer(OVERRIDES)))
    after = _snapshot(store_target)
    _rebuild(store_target)
    _same(after, _snapshot(store_target))


def test_reprice_again_changes_nothing(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, _calls(NOW - DAY, 50)).close()
    assert run(cli, "reprice", db).returncode == 0
    result = run(cli, "reprice", db)
    assert result.returncode == 0, result.stderr
    assert "50 looked at, 0 costs changed (+0.000000 USD)" in result.stdout, result.stdout


def test_bad_price_files_are_usage_errors(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seed(db, _calls(NOW - DAY, 5)).close()
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpt-4o-mini": {"input": 1}}')
    assert_user_error(run(cli, "reprice", db, "--prices", bad), "--prices", "needs 'input' and 'output'")
    bad.write_text("{not json")
    assert_user_error(run(cli, "reprice", db, "--prices", bad), "not valid JSON")
    assert_user_error(run(cli, "reprice", db, "--prices", tmp_path / "missing.json"), "--prices")
    assert_user_error(run(cli, "reprice", tmp_path / "nope.db"))


def test_store_facade_reprices(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    calls = _calls(NOW - DAY, 40)
    seed(db, calls).close()
    store = Store(open_engine(db))
    try:
        result = store.reprice(Pricer(OVERRIDES).price, batch=7)
    finally:
        store.close()
    assert (result.scanned, result.unpriced, result.failed) == (40, 8, 0)
    assert result.batches == 6  # five full batches of 7 and the short last one
    stored = [c for (c,) in rows(str(db), "SELECT cost_usd FROM calls ORDER BY id")]
    _assert_costs(stored, _expected_costs(calls, Pricer(OVERRIDES)))
