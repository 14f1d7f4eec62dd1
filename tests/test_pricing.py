"""Cost from genai-prices (cached per model), overrides, and NULL for the unknown."""

from __future__ import annotations

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
