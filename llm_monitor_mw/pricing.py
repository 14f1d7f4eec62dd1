"""Cost in USD as billed: genai-prices at the call's date and service tier, cache writes by TTL, plus overrides.

``genai_prices.calc_price`` takes ~0.5 ms per call (model matching and a unit registry on every call), far too
slow for the writer's 50,000 records/s. A flat (untiered) price is linear in token counts, so for each
``(provider, model, service tier, price period)`` we resolve the price once and keep its per-token rates. The
period is the interval over which genai-prices' data gives the model one price: the dated entries of its price
list and of its tier variants (``StartDateConstraint``) cut time into intervals, and a record's ``started_at``
falls in exactly one (time-of-day prices, e.g. DeepSeek's off-peak hours, add which of those windows it is in).
Tiered prices (long-context surcharges: over a threshold of input tokens every token costs more) are linear
within each tier, so they keep one set of rates per tier, and each call picks its tier by its input tokens.

Token kinds priced apart: uncached input, cache reads, 5-minute cache writes, 1-hour cache writes (Anthropic bills
2x input instead of 1.25x), output, and reasoning (output, at its own rate where genai-prices lists one).
When genai-prices' price list is replaced (the opt-in live updater), every cached rate is dropped.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
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
_OVERRIDE_KEYS = {"input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning"}
# Anthropic's documented multiplier for 1-hour cache writes (5-minute ones are 1.25x): used where genai-prices
# lists a Claude model's cache-write price but no 1-hour one (e.g. some resellers), and for overrides without one.
_ONE_HOUR_WRITE_MULTIPLIER = Decimal(2)
_MISSING = object()
_MAX_RATES = 10_000


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for each kind of token. ``None`` rates fall back as documented on each field."""

    input: float
    output: float
    cache_read: float | None = None
    """``None``: the input rate."""
    cache_write: float | None = None
    """5-minute (or unspecified-TTL) cache writes; ``None``: the input rate."""
    cache_write_1h: float | None = None
    """1-hour cache writes; ``None``: twice the input rate (Anthropic's documented price)."""
    reasoning: float | None = None
    """Reasoning tokens (part of the output); ``None``: the output rate."""
    per_call: float = 0.0
    """A fixed price per request (some providers charge one), USD."""

    @classmethod
    def per_million(cls, spec: Mapping[str, float]) -> Rates:
        """From a user override such as ``{"input": 0.15, "output": 0.6, "cache_read": 0.075}`` (USD per 1M).

        Optional keys: ``cache_read``, ``cache_write`` (5-minute writes), ``cache_write_1h``, ``reasoning``.
        """
        unknown = set(spec) - _OVERRIDE_KEYS
        if unknown or "input" not in spec or "output" not in spec:
            raise ValueError(
                "a price override needs 'input' and 'output' (and may have 'cache_read', 'cache_write',"
                f" 'cache_write_1h', 'reasoning'), in USD per million tokens; got {sorted(spec)}"
            )

        def rate(key: str) -> float | None:
            return float(spec[key]) / _MTOK if key in spec else None

        return cls(
            input=float(spec["input"]) / _MTOK,
            output=float(spec["output"]) / _MTOK,
            cache_read=rate("cache_read"),
            cache_write=rate("cache_write"),
            cache_write_1h=rate("cache_write_1h"),
            reasoning=rate("reasoning"),
        )

    def cost(self, record: CallRecord) -> float | None:
        """The cost of ``record``'s tokens at these rates (``None`` when its token counts are unknown)."""
        if record.input_tokens is None or record.output_tokens is None:
            return None
        read, write_5m, write_1h, uncached = _input_split(record)
        reasoning = min(record.reasoning_tokens or 0, record.output_tokens)
        cost = uncached * self.input + (record.output_tokens - reasoning) * self.output
        cost += read * (self.input if self.cache_read is None else self.cache_read)
        cost += write_5m * (self.input if self.cache_write is None else self.cache_write)
        one_hour = (
            float(_ONE_HOUR_WRITE_MULTIPLIER) * self.input if self.cache_write_1h is None else self.cache_write_1h
        )
        cost += write_1h * one_hour
        cost += reasoning * (self.output if self.reasoning is None else self.reasoning)
        return cost + self.per_call


def _input_split(record: CallRecord) -> tuple[int, int, int, int]:
    """``(cache reads, 5-minute writes, 1-hour writes, uncached)`` of the input, clamped to add up to it."""
    total = record.input_tokens or 0
    read = min(record.cached_tokens or 0, total)
    one_hour = record.cache_write_1h_tokens or 0
    created = record.cache_creation_tokens
    if created is None:
        created = (record.cache_write_5m_tokens or 0) + one_hour
    created = min(created, total - read)
    one_hour = min(one_hour, created)
    return read, created - one_hour, one_hour, total - read - created


def price_context(tier: str | None) -> dict[str, str] | None:
    """genai-prices' ``price_context`` for a recorded service tier (``None``: the standard price).

    OpenAI and Gemini tiers are ``service_tier`` variants (``flex``, ``priority``...); Anthropic reports its Message
    Batches calls as ``batch``, which genai-prices prices as ``processing: batch``.
    """
    if not tier:
        return None
    context = {"service_tier": tier}
    if tier == "batch":
        context["processing"] = "batch"
    return context


class _Model:
    """One genai-prices model as matched for a ``(provider, model)``, and where its price periods start."""

    __slots__ = ("daily", "info", "provider", "starts")

    def __init__(self, provider: Any, info: Any) -> None:
        from genai_prices.types import ModelPrice, StartDateConstraint, TimeOfDateConstraint

        self.provider = provider
        self.info = info
        constraints = [] if isinstance(info.prices, ModelPrice) else [c.constraint for c in info.prices]
        constraints += [v.constraint for v in info.price_variants or ()]
        starts = {_midnight(c.start_date) for c in constraints if isinstance(c, StartDateConstraint)}
        self.starts = sorted(starts)
        self.daily = [c for c in constraints if isinstance(c, TimeOfDateConstraint)]

    def period(self, started_at: float) -> int | tuple[Any, ...]:
        """Which price period ``started_at`` falls in: the same number for every instant with the same prices."""
        index = bisect.bisect_right(self.starts, started_at)
        if not self.daily:
            return index
        moment = _timestamp(started_at)
        return (index, *(c.active(moment) for c in self.daily))


class Pricer:
    """Prices records: user overrides by model (or ``provider/model``), then genai-prices, else ``None``.

    ``update_prices``: ``True`` starts genai-prices' background updater (:class:`genai_prices.UpdatePrices`, hourly
    fetches of its latest price list), or pass a configured ``UpdatePrices``; a failed fetch is logged by
    genai-prices and the prices in use stay. Stop it with :meth:`close`.
    """

    def __init__(
        self, overrides: Mapping[str, Mapping[str, float]] | None = None, *, update_prices: bool | Any = False
    ) -> None:
        self._overrides = {key: Rates.per_million(spec) for key, spec in (overrides or {}).items()}
        self._models: dict[tuple[str, str], _Model | None] = {}
        self._rates: dict[tuple[Any, ...], Rates | Tiered | None] = {}
        self._snapshot: Any = None
        self._updater: Any = None
        if update_prices:
            self._start_updates(update_prices)

    def price(self, record: CallRecord) -> float | None:
        """The cost of ``record`` in USD, or ``None`` when the model or the token counts are unknown."""
        model = record.model
        if model is None or record.input_tokens is None or record.output_tokens is None:
            return None
        override = self._overrides.get(f"{record.provider}/{model}") or self._overrides.get(model)
        if override is not None:
            return override.cost(record)
        self._check_snapshot()
        key = (record.provider, model)
        found = self._models.get(key, _MISSING)
        if found is _MISSING:
            found = self._models[key] = self._lookup(record.provider, model)
        if found is None:
            return None
        assert isinstance(found, _Model)
        rates_key = (record.provider, model, record.service_tier, found.period(record.started_at))
        rates = self._rates.get(rates_key, _MISSING)
        if rates is _MISSING:
            if len(self._rates) >= _MAX_RATES:  # tiers come from responses: a hostile server cannot grow this
                self._rates.clear()
            rates = self._rates[rates_key] = self._resolve(found, record)
        if rates is None:
            return None
        return rates.cost(record)

    def close(self) -> None:
        """Stop the background price updater, if this pricer started one."""
        updater, self._updater = self._updater, None
        if updater is not None:
            try:
                updater.stop()
            except Exception:  # pragma: no cover - defensive: stopping never reaches the host
                logger.exception("llm_monitor_mw: stopping the genai-prices updater failed")

    def _start_updates(self, update_prices: bool | Any) -> None:
        try:
            import genai_prices

            updater = genai_prices.UpdatePrices() if update_prices is True else update_prices
            updater.start(wait=False)  # never blocks start-up; fetch errors are logged on its thread
        except Exception:
            logger.exception("llm_monitor_mw: could not start genai-prices' price updater; bundled prices in use")
            return
        self._updater = updater

    def _check_snapshot(self) -> None:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:  # new prices (the live updater): everything resolved before is stale
            self._snapshot = snapshot
            self._models.clear()
            self._rates.clear()

    def _lookup(self, provider: str, model: str) -> _Model | None:
        if provider in _LOCAL:
            return None
        known = GENAI_PRICES_PROVIDER.get(provider)
        # An unknown host (a proxy, a gateway, a self-hosted server): match the model name across providers,
        # then try the big first-party lists (genai-prices' own matching skips e.g. embedding models).
        candidates: tuple[str | None, ...] = (known,) if known else (None, "openai", "anthropic", "google")
        for provider_id in candidates:
            try:
                found = self._snapshot.find_provider_model(model, None, provider_id, None)
            except LookupError:
                continue
            except Exception:
                logger.exception("llm_monitor_mw: price lookup failed for %s %r", provider, model)
                return None
            return _Model(*found)
        logger.info("llm_monitor_mw: no price known for %s model %r; cost left unknown", provider, model)
        return None

    @staticmethod
    def _resolve(found: _Model, record: CallRecord) -> Rates | Tiered | None:
        """Per-token rates of the price in force for ``record``'s period and tier (per input-size tier if the price
        has long-context tiers)."""
        import genai_prices

        try:
            resolved = found.info.calc_price(
                genai_prices.Usage(),
                found.provider,
                genai_request_timestamp=_timestamp(record.started_at),
                price_context=price_context(record.service_tier),
            ).model_price
            model_price = _with_one_hour_writes(found.info.id, resolved)
            starts = _tier_starts(model_price)
            if not starts:
                return _rates(model_price)
            # Level i holds for inputs in (starts[i-1], starts[i]]: every tiered price is one flat price there.
            levels = [_rates(_flatten(model_price, start + 1)) for start in (-1, *starts)]
            return Tiered(starts, levels)
        except Exception:
            logger.exception("llm_monitor_mw: price lookup failed for %s %r", record.provider, record.model)
            return None


@dataclass(frozen=True, slots=True)
class Tiered:
    """A long-context price: genai-prices' "cliff" tiers, where crossing a tier's input-token threshold bills every
    token at that tier's rates. One set of :class:`Rates` per tier, chosen per call by its input tokens."""

    starts: list[int]
    """The input-token thresholds, ascending: a call with more input tokens than ``starts[i]`` is in tier ``i+1``."""
    levels: list[Rates]

    def cost(self, record: CallRecord) -> float | None:
        """The cost of ``record`` at the rates of the tier its input size falls in."""
        return self.levels[bisect.bisect_left(self.starts, record.input_tokens or 0)].cost(record)


def _rates(model_price: Any) -> Rates:
    """The per-token rates of a flat genai-prices ``ModelPrice``, each measured with genai-prices itself."""
    import genai_prices

    def total(**tokens: int) -> float:
        return float(model_price.calc_price(genai_prices.Usage(**tokens))["total_price"])

    fixed = total()  # a per-request price is in every total: taken out of the per-token rates

    def rate(**tokens: int) -> float:
        return (total(**tokens) - fixed) / _MTOK

    return Rates(
        input=rate(input_tokens=_MTOK),
        output=rate(output_tokens=_MTOK),
        cache_read=rate(input_tokens=_MTOK, cache_read_tokens=_MTOK),
        cache_write=rate(input_tokens=_MTOK, cache_write_tokens=_MTOK),
        cache_write_1h=rate(input_tokens=_MTOK, cache_write_tokens=_MTOK, cache_write_1h_tokens=_MTOK),
        reasoning=rate(output_tokens=_MTOK, output_reasoning_tokens=_MTOK),
        per_call=fixed,
    )


def _tier_starts(model_price: Any) -> list[int]:
    from genai_prices.types import TieredPrices

    return sorted({t.start for v in vars(model_price).values() if isinstance(v, TieredPrices) for t in v.tiers})


def _flatten(model_price: Any, input_tokens: int) -> Any:
    """``model_price`` with each tiered price replaced by the one a call of ``input_tokens`` input pays (the same
    rule as genai-prices' ``calc_unit_price``: the highest tier whose start the input exceeds, else the base)."""
    from genai_prices.types import TieredPrices

    flat = copy(model_price)
    for key, value in vars(model_price).items():
        if isinstance(value, TieredPrices):
            price = value.base
            for tier in reversed(value.tiers):
                if input_tokens > tier.start:
                    price = tier.price
                    break
            flat.__dict__[key] = price
    return flat


def _with_one_hour_writes(model_id: str, model_price: Any) -> Any:
    """A Claude price with a cache-write price but no 1-hour one gains Anthropic's documented 2x input."""
    from genai_prices.types import Tier, TieredPrices

    if "claude" not in model_id.lower() or model_price.cache_write_mtok is None:
        return model_price
    if model_price.cache_write_1h_mtok is not None or model_price.input_mtok is None:
        return model_price
    base = model_price.input_mtok
    patched = copy(model_price)
    if isinstance(base, TieredPrices):
        tiers = [Tier(start=t.start, price=t.price * _ONE_HOUR_WRITE_MULTIPLIER) for t in base.tiers]
        patched.__dict__["cache_write_1h_mtok"] = TieredPrices(base=base.base * _ONE_HOUR_WRITE_MULTIPLIER, tiers=tiers)
    else:
        patched.__dict__["cache_write_1h_mtok"] = base * _ONE_HOUR_WRITE_MULTIPLIER
    return patched


def _midnight(day: date) -> float:
    """The epoch second a UTC date starts (genai-prices compares a request's UTC date with a price's start)."""
    return datetime.combine(day, time(0), tzinfo=UTC).timestamp()


def _timestamp(started_at: float) -> datetime:
    try:
        return datetime.fromtimestamp(started_at, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.now(UTC)
