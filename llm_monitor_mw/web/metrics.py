"""Prometheus exposition: ``GET {mount}/metrics``.

Call metrics come from the cumulative counter tables the writer maintains (``store/counters.py``), read (never
written: a scrape writes nothing) in one snapshot, so every worker process of an app answers with the same
totals. Whose calls: on SQLite the whole file (one host's worker processes); on PostgreSQL this instance's only
(``store.metrics_instance``), so a Prometheus sum over the scraped instances counts each call once. The monitor's
own queue/drop/failure figures are per process (labelled ``pid``), and so are the standard
``process_*``/``python_*`` metrics: they describe whichever worker answered the scrape.

Each of the ``provider``, ``model`` and ``status`` labels shows at most ``Monitor(metrics_max_label_values=100)``
values; the rest are summed under ``other`` (``web/cardinality.py`` says which values keep their name).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

from .._version import __version__
from ..store.counters import LATENCY_BUCKETS_S, Counters, Histogram, Snapshot
from .cardinality import DEFAULT_MAX_LABEL_VALUES, LABELS, Fold, ValueStats, check_limit

logger = logging.getLogger("llm_monitor_mw")

UNKNOWN_MODEL = "unknown"
"""The ``model`` label of calls whose model is not known (e.g. a request that failed before naming one)."""
TOKEN_TYPES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cached": "cached_tokens",
    "cache_creation": "cache_creation_tokens",
    "reasoning": "reasoning_tokens",
}
"""``llm_tokens_total{type}`` label value -> counter field."""
HISTOGRAMS = {
    "duration": (
        "llm_request_duration_seconds",
        "Duration of LLM API requests (HTTP attempts), from sending to the end of the response body.",
    ),
    "ttft": (
        "llm_time_to_first_token_seconds",
        "Time from sending a streamed LLM request to its first content token.",
    ),
}
_BUCKET_LABELS = [floatToGoString(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]


def _model(model: str) -> str:
    return model or UNKNOWN_MODEL


class MetricsSource(Protocol):
    """What ``/metrics`` reads (the :class:`~llm_monitor_mw.store.Store` facade has it all)."""

    counters: Counters
    metrics_instance: str | None
    """Whose calls to count (``None``: every instance's)."""

    def stats(self) -> Mapping[str, Any]:
        """This process's writer figures: queued, written, dropped, failed, internal_errors, last_write_at."""
        ...


class CallCollector:
    """LLM call metrics from the shared database: identical whichever process serves the scrape.

    ``max_label_values`` bounds the distinct values of each of ``provider``, ``model`` and ``status``
    (see ``web/cardinality.py``: the rest are summed under ``other``).
    """

    def __init__(
        self, counters: Counters, max_label_values: int = DEFAULT_MAX_LABEL_VALUES, *, instance: str | None = None
    ) -> None:
        self.counters = counters
        self.instance = instance
        self.max_label_values = check_limit(max_label_values)

    def describe(self) -> list[Metric]:
        """Nothing, so that registering the collector does not touch the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read the counters (one snapshot, no writes), then yield them."""
        up = GaugeMetricFamily(
            "llm_monitor_database_up", "1 if the call metrics could be read from the monitor's database, else 0."
        )
        try:
            snapshot = self.counters.snapshot(self.instance)
        except Exception:  # any engine's errors, a lost connection: the scrape still answers
            logger.exception("llm_monitor_mw: cannot read the call counters for /metrics")
            up.add_metric([], 0)
            yield up
            return
        fold = Fold.choose(label_stats(snapshot), self.max_label_values)
        up.add_metric([], 1)
        yield up
        yield from _call_metrics(snapshot, fold)


def label_stats(snapshot: Snapshot) -> dict[str, dict[str, ValueStats]]:
    """Per label under the budget, per stored value: requests and successful requests (see ``cardinality``)."""
    sums: dict[str, dict[str, list[float]]] = {label: {} for label in LABELS}
    for t in snapshot.totals:
        for label, value in (("provider", t.provider), ("model", _model(t.model)), ("status", t.status)):
            figures = sums[label].setdefault(value, [0, 0])
            figures[0] += t.requests
            figures[1] += t.requests - t.errors
    return {label: {v: ValueStats(*f) for v, f in values.items()} for label, values in sums.items()}


def _call_metrics(snapshot: Snapshot, fold: Fold) -> Iterator[Metric]:
    labels = ["provider", "model"]
    requests = CounterMetricFamily(
        "llm_requests_total",
        "LLM API requests (HTTP attempts; SDK retries count separately) by HTTP status, or status 'error' when no"
        " response arrived.",
        labels=[*labels, "status"],
    )
    errors = CounterMetricFamily(
        "llm_request_errors_total",
        "Failed LLM API requests: an HTTP status of 400 or more, no response, or a broken/invalid response body.",
        labels=labels,
    )
    rate_limited = CounterMetricFamily(
        "llm_rate_limit_hits_total", "LLM API requests answered with HTTP 429 (rate limited).", labels=labels
    )
    tokens = CounterMetricFamily(
        "llm_tokens_total",
        "Tokens reported by the provider, by type: input (including cached), output (including reasoning), cached"
        " (input read from cache), cache_creation (input written to cache), reasoning.",
        labels=[*labels, "type"],
    )
    cost = CounterMetricFamily(
        "llm_cost_usd_total",
        "Estimated cost of LLM API requests in US dollars (unknown prices count 0).",
        labels=labels,
    )
    per_status: dict[tuple[str, str, str], float] = {}
    per_model: dict[tuple[str, str], dict[str, float]] = {}
    for t in snapshot.totals:
        key = (fold.label("provider", t.provider), fold.label("model", _model(t.model)))
        status_key = (*key, fold.label("status", t.status))
        per_status[status_key] = per_status.get(status_key, 0) + t.requests
        sums = per_model.setdefault(key, dict.fromkeys(("errors", "n429", "cost_usd", *TOKEN_TYPES), 0))
        sums["errors"] += t.errors
        sums["n429"] += t.requests if t.status == "429" else 0
        sums["cost_usd"] += t.cost_usd
        for label, field in TOKEN_TYPES.items():
            sums[label] += getattr(t, field)
    for status_key, n in per_status.items():
        requests.add_metric(list(status_key), n)
    for key, sums in per_model.items():
        errors.add_metric(list(key), sums["errors"])
        rate_limited.add_metric(list(key), sums["n429"])
        cost.add_metric(list(key), sums["cost_usd"])
        for label in TOKEN_TYPES:
            tokens.add_metric([*key, label], sums[label])
    yield from (requests, errors, rate_limited, tokens, cost)
    yield from _histograms(snapshot.histograms, fold)


def _histograms(histograms: list[Histogram], fold: Fold) -> Iterator[Metric]:
    families = {
        metric: HistogramMetricFamily(name, doc, labels=["provider", "model"])
        for metric, (name, doc) in HISTOGRAMS.items()
    }
    folded: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
    for h in histograms:
        if h.metric not in families:
            continue
        key = (h.metric, fold.label("provider", h.provider), fold.label("model", _model(h.model)))
        counts, total = folded.setdefault(key, ([0] * len(h.counts), [0.0]))
        for i, n in enumerate(h.counts):
            counts[i] += n
        total[0] += h.sum_seconds
    for (metric, provider, model), (counts, total) in folded.items():
        cumulative, running = [], 0
        for label, n in zip(_BUCKET_LABELS, counts, strict=True):
            running += n
            cumulative.append((label, running))
        families[metric].add_metric([provider, model], cumulative, total[0])
    yield from families.values()


_MONITOR_METRICS = (
    ("llm_monitor_queue_depth", "gauge", "queued", "Call records waiting for the writer"),
    ("llm_monitor_written_records_total", "counter", "written", "Call records written"),
    ("llm_monitor_dropped_records_total", "counter", "dropped", "Call records dropped because the queue was full"),
    ("llm_monitor_failed_writes_total", "counter", "failed", "Call records that could not be built or written"),
    ("llm_monitor_internal_errors_total", "counter", "internal_errors", "Internal errors of capture and listeners"),
)
_PER_PROCESS = " in the worker process that served this scrape (label pid)."


class MonitorCollector:
    """The monitor's own health, as seen by the process that serves the scrape (label ``pid``)."""

    def __init__(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        self.stats = stats

    def describe(self) -> list[Metric]:
        """Nothing to check at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield ``llm_monitor_*`` figures from ``stats()``."""
        stats = self.stats()
        pid = [str(os.getpid())]
        info = GaugeMetricFamily("llm_monitor_info", "llm-monitor-mw version (always 1).", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        for name, kind, key, doc in _MONITOR_METRICS:
            family_type = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            family = family_type(name, doc + _PER_PROCESS, labels=["pid"])
            family.add_metric(pid, stats[key])
            yield family
        if stats["last_write_at"] is not None:
            last = GaugeMetricFamily(
                "llm_monitor_last_write_timestamp_seconds",
                "Unix time of the last successful write of call records" + _PER_PROCESS,
                labels=["pid"],
            )
            last.add_metric(pid, stats["last_write_at"])
            yield last


def build_registry(source: MetricsSource, max_label_values: int = DEFAULT_MAX_LABEL_VALUES) -> CollectorRegistry:
    """A private registry (never the global one): call metrics, the monitor's own, process, platform and GC."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CallCollector(source.counters, max_label_values, instance=source.metrics_instance))
    registry.register(MonitorCollector(source.stats))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def metrics_endpoint(
    source: MetricsSource, max_label_values: int = DEFAULT_MAX_LABEL_VALUES
) -> Callable[[Request], Response]:
    """The ``GET /metrics`` handler: Prometheus text format from a registry built once for ``source`` (the store:
    its counters, whose calls to count, and this process's writer figures).

    A plain function, so Starlette runs it in its thread pool (a scrape runs SQL).
    """
    registry = build_registry(source, max_label_values)

    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
