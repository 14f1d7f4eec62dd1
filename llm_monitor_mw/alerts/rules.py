"""What to watch: alert :class:`Rule` s and spend :class:`Budget` s, validated when they are built.

Both are frozen dataclasses. Durations accept seconds (``300``) or text (``"30s"``, ``"5m"``, ``"1h"``, ``"2d"``);
a bad value raises :class:`ValueError` naming the rule or budget and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..timespec import is_duration
from ..timespec import parse_duration as parse_duration_text

METRICS: dict[str, str] = {
    "error_rate": "share of failed calls (0 to 1)",
    "latency_p95_ms": "95th percentile of the call duration, in milliseconds",
    "ttft_p95_ms": "95th percentile of the time to first token of streamed calls, in milliseconds",
    "cost_usd": "spend in the window, in USD",
    "requests": "number of calls (attempts) in the window",
    "rate_limited": "number of 429 (rate limited) answers in the window",
}
"""Metric names a :class:`Rule` accepts, with what they measure over the rule's window."""

SCOPE_KEYS = ("provider", "model", "route", "user", "tag")
"""Dimensions a rule or budget can be limited to (``tag`` values are ``"key:value"``)."""
EACH = "*"
"""A budget scope value meaning "every value separately" (``{"user": "*"}``: a limit for each user)."""
SEVERITIES = ("info", "warning", "critical")
OPERATORS = (">", ">=", "<", "<=")
PERIODS = ("day", "week", "month")


def parse_duration(value: object, field_name: str) -> float:
    """Seconds from ``300``, ``"300"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"`` or ``"1w"`` (never negative)."""
    if isinstance(value, bool):
        raise ValueError(f"{field_name}: expected a duration such as 300 or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().replace(".", "", 1).isdigit():
        seconds = float(value)  # a bare number of seconds, as in TOML written by hand ("300")
    elif isinstance(value, str) and is_duration(value):
        seconds = parse_duration_text(value)
    else:
        raise ValueError(f"{field_name}: expected a duration such as 300 or '5m', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{field_name}: a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _number(value: object, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field_name}: expected a number, got {value!r}")
    return float(value)


def normalize_scope(scope: Mapping[str, object] | str | None, field_name: str, *, each: bool) -> dict[str, str]:
    """A scope as ``{key: value}`` with known keys only; ``None``, ``{}`` and ``"all"`` mean everything.

    ``each``: whether one value may be :data:`EACH` (``"*"``; for tags ``"key:*"``), as budgets allow.
    """
    if scope is None or scope == "all":
        return {}
    if not isinstance(scope, Mapping):
        raise ValueError(f"{field_name}: expected a table such as {{user = 'alice'}} or 'all', got {scope!r}")
    out: dict[str, str] = {}
    for key, raw in scope.items():
        if key not in SCOPE_KEYS:
            raise ValueError(f"{field_name}.{key}: unknown scope key; use one of {', '.join(SCOPE_KEYS)}")
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"{field_name}.{key}: expected a non-empty string, got {raw!r}")
        if key == "tag" and (":" not in raw or raw.startswith(":")):
            raise ValueError(f"{field_name}.tag: expected 'key:value' (or 'key:*'), got {raw!r}")
        out[key] = raw
    grouped = [k for k, v in out.items() if scope_group(k, v) is not None]
    if grouped and not each:
        raise ValueError(f"{field_name}: '*' (every value separately) is only allowed in budgets")
    if len(grouped) > 1:
        raise ValueError(f"{field_name}: at most one scope key may be '*', got {', '.join(grouped)}")
    return out


def scope_group(key: str, value: str) -> str | None:
    """For a "each value separately" scope entry, what it groups by (``"user"``, ``"tag:customer"``), else None."""
    if key == "tag":
        tag_key, _, tag_value = value.partition(":")
        return f"tag:{tag_key}" if tag_value == EACH else None
    return key if value == EACH else None


def describe_scope(scope: Mapping[str, str]) -> str:
    """``"all calls"`` or ``"user=alice, model=gpt-4o"``."""
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "all calls"


@dataclass(frozen=True)
class Rule:
    """An alert on a metric of the calls in a sliding window.

    The alert *fires* once ``metric op threshold`` has held at every evaluation for ``for_`` seconds (``for`` in a
    config file), and *resolves* once it has not held for ``cooldown`` seconds, so a flapping metric sends at most
    one fired/resolved pair per ``cooldown``. ``min_requests``: rates and percentiles over fewer calls than this are
    "no data", which never fires.

    Args:
        name: unique among the rules; shown in notifications.
        metric: one of :data:`METRICS`.
        threshold: the value compared with the metric (``error_rate`` is a fraction: 0.05 = 5 %).
        window: how far back each evaluation looks (seconds or ``"5m"``).
        for_: how long the condition must hold before the alert fires.
        severity: ``info``, ``warning`` or ``critical``.
        scope: ``{}``/``"all"``, or e.g. ``{"provider": "openai"}``, ``{"model": "gpt-4o"}``, ``{"route": "/chat"}``,
            ``{"user": "alice"}``, ``{"tag": "feature:search"}`` (several keys must all match).
        op: ``>`` (default), ``>=``, ``<`` or ``<=``.
        cooldown: how long the condition must stay false before a fired alert resolves.
    """

    name: str
    metric: str
    threshold: float
    window: float | str = 300.0
    for_: float | str = 0.0
    severity: str = "warning"
    scope: Mapping[str, str] = field(default_factory=dict)
    op: str = ">"
    cooldown: float | str = 300.0
    min_requests: int = 1

    def __post_init__(self) -> None:
        where = f"rule {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"rule name: expected a non-empty string, got {self.name!r}")
        if self.metric not in METRICS:
            raise ValueError(f"{where}: metric: unknown {self.metric!r}; use one of {', '.join(METRICS)}")
        set_ = object.__setattr__
        set_(self, "threshold", _number(self.threshold, f"{where}: threshold"))
        set_(self, "window", parse_duration(self.window, f"{where}: window"))
        if self.window <= 0:  # type: ignore[operator]
            raise ValueError(f"{where}: window: must be longer than 0 seconds")
        set_(self, "for_", parse_duration(self.for_, f"{where}: for"))
        set_(self, "cooldown", parse_duration(self.cooldown, f"{where}: cooldown"))
        if self.severity not in SEVERITIES:
            raise ValueError(f"{where}: severity: unknown {self.severity!r}; use one of {', '.join(SEVERITIES)}")
        if self.op not in OPERATORS:
            raise ValueError(f"{where}: op: unknown {self.op!r}; use one of {', '.join(OPERATORS)}")
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int) or self.min_requests < 0:
            raise ValueError(f"{where}: min_requests: expected an integer >= 0, got {self.min_requests!r}")
        set_(self, "scope", normalize_scope(self.scope, f"{where}: scope", each=False))

    @property
    def key(self) -> str:
        """The id of this rule's alert state in the database."""
        return f"rule:{self.name}"

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` meets the condition (no data never does)."""
        if value is None:
            return False
        t = self.threshold
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t}[self.op]

    def describe(self) -> str:
        """``"error_rate > 0.05 over 5m (provider=openai)"``."""
        window = _span(float(self.window))
        return f"{self.metric} {self.op} {self.threshold:g} over {window} ({describe_scope(self.scope)})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """A rule from a config table (``for`` is accepted for ``for_``); unknown keys raise."""
        return cls(**_kwargs(cls, data, "rule", aliases={"for": "for_"}))


@dataclass(frozen=True)
class Budget:
    """A spend limit per calendar period (UTC), over all calls or a scope.

    ``scope`` as for :class:`Rule`; one value may be ``"*"`` (tags: ``"key:*"``) for a limit per user, model, tag
    value… separately. A *warning* event is sent when spend reaches ``warn_at * limit_usd`` and an *exceeded*
    event when it reaches the limit; a new period starts from zero. ``hard=True`` also refuses, inside the
    transport and before anything is sent, every call the budget covers once it is exhausted, raising
    :class:`~llm_monitor_mw.alerts.budgets.BudgetExceeded`.

    Args:
        name: unique among the budgets.
        limit_usd: the limit in USD (``limit`` in a config file).
        period: ``day``, ``week`` (from Monday) or ``month``, in UTC.
        scope: which calls count (and, with ``hard``, which calls are refused).
        warn_at: fraction of the limit that sends a warning (``None`` or 0: no warning).
        hard: refuse calls once the budget is exhausted.
        severity: of the events this budget sends.
    """

    name: str
    limit_usd: float
    period: str = "day"
    scope: Mapping[str, str] = field(default_factory=dict)
    warn_at: float | None = 0.8
    hard: bool = False
    severity: str = "warning"

    def __post_init__(self) -> None:
        where = f"budget {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"budget name: expected a non-empty string, got {self.name!r}")
        limit = _number(self.limit_usd, f"{where}: limit")
        if limit <= 0:
            raise ValueError(f"{where}: limit: must be more than 0, got {self.limit_usd!r}")
        object.__setattr__(self, "limit_usd", limit)
        if self.period not in PERIODS:
            raise ValueError(f"{where}: period: unknown {self.period!r}; use one of {', '.join(PERIODS)}")
        if self.warn_at is not None:
            warn = _number(self.warn_at, f"{where}: warn_at")
            if not 0 <= warn < 1:
                raise ValueError(f"{where}: warn_at: expected a fraction from 0 to below 1, got {self.warn_at!r}")
            object.__setattr__(self, "warn_at", warn or None)
        if not isinstance(self.hard, bool):
            raise ValueError(f"{where}: hard: expected true or false, got {self.hard!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"{where}: severity: unknown {self.severity!r}; use one of {', '.join(SEVERITIES)}")
        object.__setattr__(self, "scope", normalize_scope(self.scope, f"{where}: scope", each=True))

    @property
    def group(self) -> str | None:
        """What a per-value budget groups by (``"user"``, ``"model"``, ``"tag:customer"``…), else ``None``."""
        for key, value in self.scope.items():
            group = scope_group(key, value)
            if group is not None:
                return group
        return None

    @property
    def fixed_scope(self) -> dict[str, str]:
        """The scope without its ``"*"`` entry: what every counted call must match."""
        return {k: v for k, v in self.scope.items() if scope_group(k, v) is None}

    def key(self, value: str | None = None) -> str:
        """The id of this budget's state (for ``value`` of a per-value budget) in the database."""
        return f"budget:{self.name}" if value is None else f"budget:{self.name}:{value}"

    def scope_for(self, value: str | None) -> dict[str, str]:
        """The scope with its ``"*"`` entry replaced by ``value`` (the scope of one value's spend)."""
        scope = dict(self.scope)
        if value is not None:
            for key, raw in self.scope.items():
                if scope_group(key, raw) is not None:
                    scope[key] = value if key != "tag" else f"{raw.partition(':')[0]}:{value}"
        return scope

    def describe(self, value: str | None = None) -> str:
        """``"$50 per day (user=alice)"``."""
        return f"${self.limit_usd:g} per {self.period} ({describe_scope(self.scope_for(value))})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """A budget from a config table (``limit`` is accepted for ``limit_usd``); unknown keys raise."""
        return cls(**_kwargs(cls, data, "budget", aliases={"limit": "limit_usd"}))


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """Start and end (Unix seconds) of the UTC ``day``/``week``/``month`` containing ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        raise ValueError(f"period: unknown {period!r}; use one of {', '.join(PERIODS)}")
    return start.timestamp(), end.timestamp()


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _kwargs(cls: type, data: Mapping[str, Any], what: str, aliases: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected a table, got {data!r}")
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    shown = {aliases.get(k, k): k for k in aliases} | {k: k for k in fields if k not in aliases.values()}
    name = data.get("name", "?")
    out: dict[str, Any] = {}
    for key, value in data.items():
        target = aliases.get(key, key)
        if target not in fields or target in out:
            raise ValueError(
                f"{what} {name!r}: {key}: unknown or repeated field; use {', '.join(sorted(shown.values()))}"
            )
        out[target] = value
    for target, spec in fields.items():
        if spec.default is MISSING and spec.default_factory is MISSING and target not in out:
            raise ValueError(f"{what} {name!r}: {shown[target]}: required field is missing")
    return out
