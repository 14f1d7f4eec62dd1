"""Cost from genai-prices (at the call's date and tier, cache writes by TTL), overrides, and NULL for the unknown."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import genai_prices
import pytest

from llm_monitor_mw.pricing import Pricer, Rates
from llm_monitor_mw.record import CallRecord


def rec(provider: str, model: str | None, **tokens: int | None) -> CallRecord:
    return CallRecord(started_at=0, provider=provider, operation="chat", endpoint="/", response_model=model, **tokens)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("provider", "pid", "model"),
    [
        ("openai", "openai", "gpt-4o-mini"),
        ("openai", "openai", "o3-mini"),
        ("anthropic", "anthropic", "claude-sonnet-4-5"),
        ("gcp.gemini", "google", "gemini-2.5-flash"),
        ("groq", "groq", "llama-3.3-70b-versatile"),
        ("azure.ai.openai", "azure", "gpt-4o"),
    ],
)
def test_matches_genai_prices_exactly(provider: str, pid: str, model: str) -> None:
    record = rec(
        provider,
        model,
        input_tokens=12_000,
        output_tokens=3_000,
        cached_tokens=4_000,
        cache_creation_tokens=1_000 if provider == "anthropic" else None,
    )
    usage = genai_prices.Usage(
        input_tokens=12_000,
        output_tokens=3_000,
        cache_read_tokens=4_000,
        cache_write_tokens=1_000 if provider == "anthropic" else 0,
    )
    expected = float(genai_prices.calc_price(usage, model, provider_id=pid).total_price)
    assert Pricer().price(record) == pytest.approx(expected, rel=1e-9)


def test_cached_input_is_cheaper() -> None:
    pricer = Pricer()
    full = pricer.price(rec("openai", "gpt-4o-mini", input_tokens=10_000, output_tokens=0))
    cached = pricer.price(rec("openai", "gpt-4o-mini", input_tokens=10_000, output_tokens=0, cached_tokens=10_000))
    assert cached is not None and full is not None and cached == pytest.approx(full / 2)


def test_unknowns_are_null_not_zero() -> None:
    pricer = Pricer()
    assert pricer.price(rec("openai", "no-such-model-xyz", input_tokens=1, output_tokens=1)) is None
    assert pricer.price(rec("openai", "gpt-4o-mini", input_tokens=None, output_tokens=5)) is None
    assert pricer.price(rec("openai", None, input_tokens=1, output_tokens=1)) is None
    assert pricer.price(rec("ollama", "llama3.2", input_tokens=1, output_tokens=1)) is None
    assert pricer.price(rec("openai", "gpt-4o-mini", input_tokens=0, output_tokens=0)) == 0


def test_unknown_host_falls_back_to_model_name() -> None:
    assert Pricer().price(
        rec("gateway.local:4000", "text-embedding-3-small", input_tokens=1_000_000, output_tokens=0)
    ) == pytest.approx(0.02)


def test_overrides_by_model_and_provider_model() -> None:
    pricer = Pricer(
        {"llama3.2": {"input": 1.0, "output": 2.0}, "openai/gpt-4o-mini": {"input": 10, "output": 20, "cache_read": 1}}
    )
    assert pricer.price(rec("ollama", "llama3.2", input_tokens=1_000_000, output_tokens=500_000)) == pytest.approx(2.0)
    assert pricer.price(
        rec("openai", "gpt-4o-mini", input_tokens=2_000_000, output_tokens=0, cached_tokens=1_000_000)
    ) == pytest.approx(11.0)


def test_bad_override_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs 'input' and 'output'"):
        Rates.per_million({"input": 1.0})


# ---- prices as billed: date, tier, cache TTL, reasoning, long context ----------------------------------------------

JUNE_2025 = datetime(2025, 6, 10, tzinfo=UTC)  # o3's price cut: $10/$40 per MTok before, $2/$8 from this day


def billed(
    provider: str,
    model: str,
    at: datetime,
    *,
    tier: str | None = None,
    **tokens: int,
) -> CallRecord:
    """A record started at ``at``; ``tokens`` in genai-prices' names, translated to the record's."""
    names = {
        "input_tokens": "input_tokens",
        "output_tokens": "output_tokens",
        "cache_read_tokens": "cached_tokens",
        "cache_write_tokens": "cache_creation_tokens",
        "cache_write_5m_tokens": "cache_write_5m_tokens",
        "cache_write_1h_tokens": "cache_write_1h_tokens",
        "output_reasoning_tokens": "reasoning_tokens",
    }
    return CallRecord(
        started_at=at.timestamp(),
        provider=provider,
        operation="chat",
        endpoint="/",
        response_model=model,
        service_tier=tier,
        **{names[k]: v for k, v in tokens.items()},  # type: ignore[arg-type]
    )


def expected(pid: str, model: str, at: datetime, *, tier: str | None = None, **tokens: int) -> float:
    """genai-prices' own figure for the same call."""
    context = {"service_tier": tier} if tier else None
    usage = genai_prices.Usage(**tokens)
    return float(
        genai_prices.calc_price(
            usage, model, provider_id=pid, genai_request_timestamp=at, price_context=context
        ).total_price
    )


NOW = datetime(2026, 11, 16, 12, tzinfo=UTC)  # after genai-prices dated its tier prices (2026-10-12)


@pytest.mark.parametrize(
    ("provider", "pid", "model", "tier", "tokens"),
    [
        # cached input
        (
            "openai",
            "openai",
            "gpt-4o-mini",
            None,
            {"input_tokens": 50_000, "cache_read_tokens": 30_000, "output_tokens": 900},
        ),
        # cache writes, 5-minute and 1-hour (1.25x vs 2x input), with reads
        (
            "anthropic",
            "anthropic",
            "claude-opus-4-1",
            None,
            {
                "input_tokens": 40_000,
                "cache_read_tokens": 10_000,
                "cache_write_tokens": 25_000,
                "cache_write_5m_tokens": 5_000,
                "cache_write_1h_tokens": 20_000,
                "output_tokens": 1_000,
            },
        ),
        # reasoning: part of the output, at the output rate (o3) or a rate of its own (Perplexity deep research)
        (
            "openai",
            "openai",
            "o3",
            None,
            {"input_tokens": 2_000, "output_tokens": 9_000, "output_reasoning_tokens": 7_000},
        ),
        (
            "perplexity",
            "perplexity",
            "sonar-deep-research",
            None,
            {"input_tokens": 2_000, "output_tokens": 9_000, "output_reasoning_tokens": 7_000},
        ),
        # OpenAI service tiers
        (
            "openai",
            "openai",
            "o3",
            "flex",
            {"input_tokens": 20_000, "cache_read_tokens": 4_000, "output_tokens": 3_000},
        ),
        (
            "openai",
            "openai",
            "gpt-5",
            "priority",
            {"input_tokens": 20_000, "cache_read_tokens": 4_000, "output_tokens": 3_000},
        ),
        ("openai", "openai", "gpt-5", "flex", {"input_tokens": 20_000, "output_tokens": 3_000}),
        # long-context tiers: over 200k input tokens every token is billed at the higher rate
        (
            "gcp.gemini",
            "google",
            "gemini-2.5-pro",
            None,
            {"input_tokens": 250_000, "cache_read_tokens": 50_000, "output_tokens": 2_000},
        ),
        (
            "anthropic",
            "anthropic",
            "claude-sonnet-4-5",
            None,
            {
                "input_tokens": 260_000,
                "cache_read_tokens": 100_000,
                "cache_write_tokens": 60_000,
                "cache_write_1h_tokens": 40_000,
                "output_tokens": 4_000,
            },
        ),
    ],
    ids=[
        "cached-input",
        "cache-writes-5m-1h",
        "reasoning",
        "reasoning-own-rate",
        "flex",
        "priority",
        "flex-gpt5",
        "gemini-long",
        "claude-long",
    ],
)
def test_as_genai_prices_bills_it(
    provider: str, pid: str, model: str, tier: str | None, tokens: dict[str, int]
) -> None:
    got = Pricer().price(billed(provider, model, NOW, tier=tier, **tokens))
    want = expected(pid, model, NOW, tier=tier, **tokens)
    assert got == pytest.approx(want, rel=1e-9)
    assert want > 0


def test_one_hour_cache_writes_cost_more_than_five_minute_ones() -> None:
    pricer = Pricer()
    tokens = {"input_tokens": 100_000, "output_tokens": 0, "cache_write_tokens": 100_000}
    five = pricer.price(billed("anthropic", "claude-opus-4-1", NOW, **tokens, cache_write_5m_tokens=100_000))
    hour = pricer.price(billed("anthropic", "claude-opus-4-1", NOW, **tokens, cache_write_1h_tokens=100_000))
    assert five == pytest.approx(100_000 * 15 * 1.25 / 1e6)
    assert hour == pytest.approx(100_000 * 15 * 2 / 1e6)


def test_tiers_change_the_price() -> None:
    pricer = Pricer()
    tokens = {"input_tokens": 20_000, "output_tokens": 3_000}
    standard, flex, priority = (
        pricer.price(billed("openai", "gpt-5", NOW, tier=t, **tokens)) for t in (None, "flex", "priority")
    )
    assert standard is not None and flex is not None and priority is not None
    assert flex < standard < priority
    assert pricer.price(billed("openai", "gpt-5", NOW, tier="default", **tokens)) == pytest.approx(standard)


def test_a_price_that_changed_on_a_date() -> None:
    pricer = Pricer()
    tokens = {"input_tokens": 10_000, "output_tokens": 5_000}
    before = JUNE_2025 - timedelta(seconds=1)
    old = pricer.price(billed("openai", "o3", before, **tokens))
    new = pricer.price(billed("openai", "o3", JUNE_2025, **tokens))
    assert old == pytest.approx(expected("openai", "o3", before, **tokens), rel=1e-9)
    assert new == pytest.approx(expected("openai", "o3", JUNE_2025, **tokens), rel=1e-9)
    assert old is not None and new is not None and old > new
    # both periods stay cached side by side: a record from before the change is still priced at the old price
    assert pricer.price(billed("openai", "o3", before - timedelta(days=30), **tokens)) == pytest.approx(old)


def test_rates_are_resolved_once_per_price_period_not_per_hour() -> None:
    pricer = Pricer()
    tokens = {"input_tokens": 1_000, "output_tokens": 100}
    for day in range(60):  # two months inside o3's second period: one resolution
        pricer.price(billed("openai", "o3", JUNE_2025 + timedelta(days=day, hours=day % 24), **tokens))
    assert len(pricer._rates) == 1
    pricer.price(billed("openai", "o3", JUNE_2025 - timedelta(days=1), **tokens))
    pricer.price(billed("openai", "o3", JUNE_2025, tier="flex", **tokens))
    assert len(pricer._rates) == 3


def test_overrides_may_price_one_hour_writes() -> None:
    spec = {"input": 10.0, "output": 20.0, "cache_write": 12.5, "cache_write_1h": 30.0}
    pricer = Pricer({"anthropic/my-claude": spec, "other": {"input": 10.0, "output": 20.0}})
    tokens = {"input_tokens": 1_000_000, "output_tokens": 0, "cache_write_tokens": 1_000_000}
    assert pricer.price(
        billed("anthropic", "my-claude", NOW, **tokens, cache_write_1h_tokens=400_000)
    ) == pytest.approx(0.6 * 12.5 + 0.4 * 30.0)
    # without a 1-hour rate: Anthropic's documented 2x input
    assert pricer.price(billed("anthropic", "other", NOW, **tokens, cache_write_1h_tokens=1_000_000)) == pytest.approx(
        20.0
    )


def test_live_updates_are_off_by_default() -> None:
    assert Pricer()._updater is None


def test_a_failed_price_update_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    """The updater fetching from a closed loopback port: start-up does not wait, pricing goes on, the error is
    logged by genai-prices' thread."""
    updater = genai_prices.UpdatePrices(url="http://127.0.0.1:9/prices.json", update_interval=3600)
    caplog.set_level(logging.ERROR, logger="genai-prices")
    pricer = Pricer(update_prices=updater)
    try:
        assert pricer._updater is updater
        assert pricer.price(
            billed("openai", "gpt-4o-mini", NOW, input_tokens=1_000_000, output_tokens=0)
        ) == pytest.approx(0.15)
        with pytest.raises(Exception):  # noqa: B017 - only a waiter sees the error (httpx2's ConnectError)
            updater.wait(timeout=30)
        deadline = time.monotonic() + 30
        while "Error updating genai-prices" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "Error updating genai-prices" in caplog.text
        # the bundled prices are still in use
        assert pricer.price(
            billed("openai", "gpt-4o-mini", NOW, input_tokens=1_000_000, output_tokens=0)
        ) == pytest.approx(0.15)
    finally:
        pricer.close()
    assert pricer._updater is None


def test_monitor_passes_update_prices(tmp_path: Path) -> None:
    from llm_monitor_mw import Monitor

    monitor = Monitor(tmp_path / "m.db")
    try:
        assert monitor.pricer._updater is None
    finally:
        monitor.close()
    # enabled: the updater runs on its own thread (here against a closed loopback port) and start-up goes on
    updater = genai_prices.UpdatePrices(url="http://127.0.0.1:9/prices.json")
    monitor = Monitor(tmp_path / "m.db", update_prices=updater)
    try:
        assert monitor.pricer._updater is updater
    finally:
        monitor.close()
    assert monitor.pricer._updater is None


@pytest.mark.parametrize("inp", [199_999, 200_000, 200_001, 1_000_000])
@pytest.mark.parametrize(
    ("provider", "pid", "model"),
    [("gcp.gemini", "google", "gemini-2.5-pro"), ("anthropic", "anthropic", "claude-sonnet-4-5")],
)
def test_long_context_threshold_as_genai_prices(provider: str, pid: str, model: str, inp: int) -> None:
    """Over 200k input tokens every token is billed at the long-context rate (genai-prices' cliff), not at 200k."""
    tokens = {"input_tokens": inp, "cache_read_tokens": inp // 4, "output_tokens": 1_000}
    got = Pricer().price(billed(provider, model, NOW, **tokens))
    assert got == pytest.approx(expected(pid, model, NOW, **tokens), rel=1e-9)
