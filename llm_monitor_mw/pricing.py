"""Cost in USD from `genai-prices`, plus user overrides.

``genai_prices.calc_price`` takes ~0.5 ms per call (model matching and a unit registry on every call), far too
slow for the writer's 50,000 records/s. Flat (untiered) prices are linear in token counts, so for each
``(provider, model)`` we ask genai-prices once for the price of one million of each token kind and keep those
per-token rates for an hour; tiered prices (e.g. long-context surcharges) still go through the library per call.
Cached input (and cache writes) are priced at their own rates; reasoning tokens are output tokens and priced so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .record import CallRecord

logger = logging.getLogger("llm_monitor_mw")

# Our provider names (OpenTelemetry vocabulary) -> genai-prices provider ids.
GENAI_PRICES_PROVIDER: dict[str, str | None] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "azure.ai.openai": "azure",
    "groq": "groq",
    "mistral_ai": "mistral",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
    # Local servers have no price list; add one with `prices=` if you want to account for them.
    "ollama": None,
    "lm_studio": None,
}
_LOCAL = {"ollama", "lm_studio"}

_MTOK = 1_000_000
_CACHE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for each kind of token. ``None`` rates fall back to the input/output rate."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    @classmethod
    def per_million(cls, spec: Mapping[str, float]) -> Rates:
        """From a user override such as ``{"input": 0.15, "output": 0.6, "cache_read": 0.075}`` (USD per 1M)."""
        unknown = set(spec) - {"input", "output", "cache_read", "cache_write"}
        if unknown or "input" not in spec or "output" not in spec:
            raise ValueError(
                "a price override needs 'input' and 'output' (and may have 'cache_read', 'cache_write'),"
                f" in USD per million tokens; got {sorted(spec)}"
            )
        return cls(
            input=float(spec["input"]) / _MTOK,
            output=float(spec["output"]) / _MTOK,
            cache_read=float(spec["cache_read"]) / _MTOK if "cache_read" in spec else None,
            cache_write=float(spec["cache_write"]) / _MTOK if "cache_write" in spec else None,
        )

    def cost(self, record: CallRecord) -> float | None:
        if record.input_tokens is None or record.output_tokens is None:
            return None
        cached = record.cached_tokens or 0
        created = record.cache_creation_tokens or 0
        uncached = max(record.input_tokens - cached - created, 0)
        cost = uncached * self.input + record.output_tokens * self.output
        cost += cached * (self.input if self.cache_read is None else self.cache_read)
        cost += created * (self.input if self.cache_write is None else self.cache_write)
        return cost


class Pricer:
    """Prices records: user overrides by model (or ``provider/model``), then genai-prices, else ``None``."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._overrides = {key: Rates.per_million(spec) for key, spec in (overrides or {}).items()}
        self._cache: dict[tuple[str, str], tuple[float, Rates | Any | None]] = {}

    def price(self, record: CallRecord) -> float | None:
        """The cost of ``record`` in USD, or ``None`` when the model or the token counts are unknown."""
        model = record.model
        if model is None or record.input_tokens is None or record.output_tokens is None:
            return None
        override = self._overrides.get(f"{record.provider}/{model}") or self._overrides.get(model)
        if override is not None:
            return override.cost(record)
        key = (record.provider, model)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or now - hit[0] > _CACHE_SECONDS:
            hit = (now, self._lookup(record.provider, model))
            self._cache[key] = hit
        rates = hit[1]
        if rates is None:
            return None
        if isinstance(rates, Rates):
            return rates.cost(record)
        return self._tiered(rates, record)

    def _lookup(self, provider: str, model: str) -> Rates | Any | None:
        if provider in _LOCAL:
            return None
        import genai_prices

        known = GENAI_PRICES_PROVIDER.get(provider)
        # An unknown host (a proxy, a gateway, a self-hosted server): match the model name across providers,
        # then try the big first-party lists (genai-prices' own matching skips e.g. embedding models).
        candidates: tuple[str | None, ...] = (known,) if known else (None, "openai", "anthropic", "google")
        base = None
        for provider_id in candidates:
            kwargs: dict[str, Any] = {"provider_id": provider_id} if provider_id else {}
            try:
                base = genai_prices.calc_price(genai_prices.Usage(input_tokens=_MTOK, output_tokens=0), model, **kwargs)
                break
            except LookupError:
                continue
            except Exception:
                logger.exception("llm_monitor_mw: price lookup failed for %s %r", provider, model)
                return None
        if base is None:
            logger.info("llm_monitor_mw: no price known for %s model %r; cost left unknown", provider, model)
            return None

        def total(**tokens: int) -> Decimal:
            return genai_prices.calc_price(genai_prices.Usage(**tokens), model, **kwargs).total_price

        model_price = base.model_price
        if _is_tiered(model_price):
            return model_price
        try:
            inp = float(base.total_price) / _MTOK
            out = float(total(input_tokens=0, output_tokens=_MTOK)) / _MTOK
            read = float(total(input_tokens=_MTOK, cache_read_tokens=_MTOK)) / _MTOK
            write = float(total(input_tokens=_MTOK, cache_write_tokens=_MTOK)) / _MTOK
        except Exception:
            logger.exception("llm_monitor_mw: price lookup failed for %s %r", provider, model)
            return None
        return Rates(input=inp, output=out, cache_read=read, cache_write=write)

    @staticmethod
    def _tiered(model_price: Any, record: CallRecord) -> float | None:
        import genai_prices

        usage = genai_prices.Usage(
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cache_read_tokens=record.cached_tokens or 0,
            cache_write_tokens=record.cache_creation_tokens or 0,
        )
        try:
            return float(model_price.calc_price(usage)["total_price"])
        except Exception:
            logger.exception("llm_monitor_mw: tiered price calculation failed for %r", record.model)
            return None


def _is_tiered(model_price: Any) -> bool:
    from genai_prices.types import TieredPrices

    return any(isinstance(value, TieredPrices) for value in vars(model_price).values())
