"""A budget of distinct values per Prometheus label: the values that matter keep their series, the rest are summed.

Every distinct ``provider``/``model``/``status`` value is a set of series (requests, errors, tokens, cost, two
histograms of 16 buckets), and both can be named by strangers: a user-typed model the provider rejected, a
``host:port`` that never answered. So each label shows at most ``limit`` values; when more exist, ``limit - 1``
keep their own name and the rest are folded into :data:`OTHER`, counters and histogram buckets summed, so a sum
over all values stays the total.

Which values keep their name is a rule over the cumulative counters alone, so every worker process (and every
restart) computes the same choice from the same database, and a scrape writes nothing:

1. *known* values first: those that answered OK at least once (a model or provider that succeeded);
2. then more cumulative requests first;
3. then by name, so that the choice is deterministic.

The trade-off: the counters only grow, so a known value never loses its place to an unknown one, and among known
values the ranking changes only when one's cumulative requests overtake another's. But nothing remembers what was
shown before: a value that loses its place (a never-OK value overtaken by a busier one, or a known value overtaken
by more known values than fit) makes its series stop and ``other`` jump by its count, which Prometheus sees as a
series ending and another growing: totals stay right, rates for that one value are lost. (An earlier version kept
the values shown in the database, which made every scrape a potential write.)
"""

from __future__ import annotations

from collections.abc import Mapping
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


def keep(stats: Mapping[str, ValueStats], limit: int) -> frozenset[str] | None:
    """The values of one label that keep their name; ``None`` when all of them fit within ``limit``."""
    if len(stats) <= limit:
        return None
    ranked = sorted(stats, key=lambda v: (stats[v].ok <= 0, -stats[v].requests, v))
    return frozenset(ranked[: limit - 1])


class Fold:
    """The label mapping of one scrape: :meth:`label` gives the value to expose for a stored one."""

    def __init__(self, kept: Mapping[str, frozenset[str] | None]) -> None:
        self._kept = dict(kept)

    @classmethod
    def choose(cls, stats: Mapping[str, Mapping[str, ValueStats]], limit: int) -> Fold:
        """The fold for ``stats`` (label -> value -> cumulative figures)."""
        return cls({label: keep(values, limit) for label, values in stats.items()})

    def label(self, label: str, value: str) -> str:
        """``value`` itself, or :data:`OTHER` when ``label`` is over its budget and ``value`` did not make it."""
        kept = self._kept.get(label)
        return value if kept is None or value in kept else OTHER
