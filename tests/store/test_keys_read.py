"""Usage per API key from the roll-ups equals the same question asked of raw rows, on both engines."""

from __future__ import annotations

import random
import time

from llm_monitor_mw.record import CallRecord
from llm_monitor_mw.store import Store, open_engine
from llm_monitor_mw.store.read import Analytics, Filters

DAY = 86400.0
KEYS = [f"{i:016x}" for i in range(1, 6)]


def test_rollups_and_raw_rows_agree(store_target: str) -> None:
    rng = random.Random(3)
    now = time.time()
    store = Store(open_engine(store_target), batch_size=500, flush_interval=0.05)
    for i in range(600):
        key = KEYS[i % 5] if i % 7 else None
        store.writer.submit(
            CallRecord(
                started_at=now - rng.random() * 10 * DAY,
                provider="openai",
                operation="chat",
                endpoint="/v1/chat/completions",
                request_model="m",
                status_code=500 if i % 11 == 0 else 200,
                input_tokens=rng.randint(1, 100),
                output_tokens=rng.randint(1, 100),
                total_tokens=None if i % 13 == 0 else 50,
                cost_usd=None if key == KEYS[4] else rng.random() / 100,  # the fifth key is never priced
                key_fingerprint=key,
                key_hint=f"sk-…{i % 5:04d}" if key else None,
            )
        )
    assert store.flush(30)
    conn = store.engine.connection()
    assert conn.execute("SELECT count(*) FROM rollup_dims_day WHERE dim = 'key'").fetchone()[0] > 0  # projected
    rolled, raw = Analytics(store.engine), Analytics(store.engine, use_rollups=False)
    cases = [
        Filters(since=now - 10.5 * DAY, until=now + 1),
        Filters(since=now - 3 * DAY - 1234.5, until=now - 3600.25),
        Filters(since=now - 2 * DAY, until=now, ok=False),
        Filters(since=now - 9 * DAY, until=now, key=KEYS[2]),
        Filters(),
    ]
    for filters in cases:
        for order in ("cost", "requests", "tokens"):
            a, b = rolled.by_key(filters, order=order, limit=4), raw.by_key(filters, order=order, limit=4)
            assert [r["key_fingerprint"] for r in a] == [r["key_fingerprint"] for r in b]
            for x, y in zip(a, b, strict=True):
                assert {k: v for k, v in x.items() if k not in ("cost_usd", "share")} == {
                    k: v for k, v in y.items() if k not in ("cost_usd", "share")
                }
                assert (x["cost_usd"] is None) == (y["cost_usd"] is None)
                if x["cost_usd"] is not None:
                    assert abs(x["cost_usd"] - y["cost_usd"]) < 1e-9
    everything = raw.by_key(Filters(), order="requests", limit=10)
    assert len(everything) == 5 and sum(r["requests"] for r in everything) == 600 - len(range(0, 600, 7))
    unpriced = next(r for r in everything if r["key_fingerprint"] == KEYS[4])
    assert unpriced["cost_usd"] is None and unpriced["cost_n"] == 0 and unpriced["key_hint"] == "sk-…0004"
    assert abs(sum(r["share"] for r in everything) - 1) < 1e-9
    only = raw.by_key(Filters(key=KEYS[2]))
    assert [r["key_fingerprint"] for r in only] == [KEYS[2]]
    store.close()
