"""A budget of distinct values per Prometheus label: the values that matter keep their series, the rest are summed.

Every distinct ``provider``/``model``/``status`` value is a set of series (requests, errors, tokens, cost, two
histograms of 16 buckets), and both can be named by strangers: a user-typed model the provider rejected, a
``host:port`` that never answered. So each label shows at most ``limit`` values; when more exist, ``limit - 1``
keep their own name and the rest are folded into :data:`OTHER`, counters and histogram buckets summed, so a sum
over all values stays the total.

Which values keep their name, in this order:

1. *known* values: those that succeeded at least once (a model or provider that answered OK);
2. values exposed before (remembered in the database, so every worker process and a restarted one agree);
3. more requests first; then by name, so that the choice is deterministic.

Known values and values already shown keep their series for as long as they fit; a value that loses its place
(only a value that never succeeded, pushed out by a newly known one) makes its series stop and ``other`` jump by
its count, which Prometheus sees as a series ending and another growing: totals stay right, rates for that one
value are lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OTHER = "other"
"""The label value that sums the values over the budget."""
DEFAULT_MAX_LABEL_VALUES = 100
"""Default distinct values per label (``Monitor(metrics_max_label_values=...)``)."""
LABELS = ("provider", "model", "status")
"""The labels under the budget (``type``, ``le`` and ``pid`` have fixed, small value sets)."""


def check_limit(limit: int) -> int:
    """``limit`` if it is a usable number of values per label (an ``int`` of at least 1), else raise."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("metrics_max_label_values must be an int")
    if limit < 1:
        raise ValueError("metrics_max_label_values must be at least 1")
    return limit


@dataclass(frozen=True, slots=True)
class ValueStats:
    """What ranks one label value: its requests, and how many of them succeeded."""

    requests: float
    ok: float


def keep(stats: Mapping[str, ValueStats], limit: int, shown_before: Iterable[str] = ()) -> frozenset[str] | None:
    """The values of one label that keep their name; ``None`` when all of them fit within ``limit``."""
    if len(stats) <= limit:
        return None
    before = frozenset(shown_before)
    ranked = sorted(stats, key=lambda v: (stats[v].ok <= 0, v not in before, -stats[v].requests, v))
    return frozenset(ranked[: limit - 1])


class Fold:
    """The label mapping of one scrape: :meth:`label` gives the value to expose for a stored one."""

    def __init__(self, kept: Mapping[str, frozenset[str] | None], seen: Mapping[str, Iterable[str]]) -> None:
        self._kept = dict(kept)
        self.shown: frozenset[tuple[str, str]] = frozenset(
            (label, value)
            for label, values in seen.items()
            for value in values
            if (k := self._kept.get(label)) is None or value in k
        )
        """``(label, value)`` pairs exposed under their own name by this scrape."""

    @classmethod
    def choose(
        cls, stats: Mapping[str, Mapping[str, ValueStats]], limit: int, shown_before: Iterable[tuple[str, str]] = ()
    ) -> Fold:
        """The fold for ``stats`` (label -> value -> figures), preferring the ``(label, value)`` pairs shown before."""
        before: dict[str, set[str]] = {}
        for label, value in shown_before:
            before.setdefault(label, set()).add(value)
        kept = {label: keep(values, limit, before.get(label, ())) for label, values in stats.items()}
        return cls(kept, {label: values.keys() for label, values in stats.items()})

    def label(self, label: str, value: str) -> str:
        """``value`` itself, or :data:`OTHER` when ``label`` is over its budget and ``value`` did not make it."""
        kept = self._kept.get(label)
        return value if kept is None or value in kept else OTHER
