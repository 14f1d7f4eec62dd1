"""The dashboard's figures: sums per bucket/provider/model, latency histograms and percentiles, breakdowns by
route, user, tag, status and error type.

Long ranges are answered from the roll-ups the writer keeps (see ``store/projections.py``):

* ``rollup_calls_{hour,day}`` — per (UTC hour/day, provider, model): the :data:`~.aggregates.SUMS`;
* ``rollup_latency_{hour,day}`` — per (hour/day, metric, bucket): a log-scale histogram of ``duration_ms``
  (metric ``d``) and ``ttft_ms`` (metric ``t``), 8 buckets per doubling, so percentiles are estimates within
  ±4.5 %; ``rollup_latency_models_{hour,day}`` the same per provider/model;
* ``rollup_quantiles_{hour,day}`` — p50/p95 of each metric per hour/day, so a latency series needs no histogram
  merging except in its two edge buckets;
* ``rollup_dims_{hour,day}`` — per (dimension, hour/day, value) for route, user, tag (``key:value``), status
  code and error type: counts, tokens and cost.

A range is answered from whole days, whole hours and raw rows at its edges (see :func:`~.plan.plan`), plus the
raw rows the roll-ups do not hold yet (ids above the projection cursor), so sums are exact at any boundary and
at any moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..engine.base import Dialect
from ..schema import CALLS
from .aggregates import (
    DIM_SUMS,
    DIMENSIONS,
    METRICS,
    SUMS,
    call_sum_exprs,
    dim_sources,
    dim_sum_exprs,
    figures,
    hist_bucket,
    latency_known,
    percentile,
)
from .base import Reader, snapshotted
from .calls import text_order
from .filters import Filters
from .plan import DAY, HOUR, RAW_MAX_SPAN, bucket_starts, plan

MIN_TIME = 0.0
MAX_TIME = 253402300799.0
"""The range of time stamps a range can be built from (1970 to the end of 9999, what ``datetime`` can show)."""

RawPart = Callable[[Filters, str], tuple[str, list[Any]]]
"""Builds ``SELECT bucket, keys, sums`` over raw rows for one segment's filters and bucket expression."""

SUMMARY_SUMS = tuple(name for name in SUMS if not name.endswith(("_n", "_sum")))
"""The sums ``api/summary`` reports: :data:`SUMS` without the helper counts behind means and cost coverage."""
LATENCY_KEYS = ("latency_p50_ms", "latency_p95_ms", "ttft_p50_ms", "ttft_p95_ms")
_NO_HIST: dict[str, dict[int, int]] = {"d": {}, "t": {}}


@dataclass(frozen=True, slots=True)
class Report:
    """What :meth:`Metrics.report` found: totals, a time series and per-model/provider sums."""

    totals: dict[str, Any]
    series: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_provider: list[dict[str, Any]]


def _round9(dialect: Dialect, expr: str) -> str:
    """``expr`` rounded to 9 decimals, so float sums that differ in their last bits order alike."""
    if dialect.name == "postgresql":
        return f"round(CAST({expr} AS NUMERIC), 9)"
    return f"round({expr}, 9)"


def _raw_bucket(dialect: Dialect, step: int) -> str:
    return dialect.bucket("started_at", step) if step else "0"


def _model_conditions(filters: Filters) -> list[tuple[str, Any]]:
    return [(f"{c} = ?", v) for c, v in (("provider", filters.provider), ("model", filters.model)) if v is not None]


class Metrics(Reader):
    """Read-only figures of the dashboard. Every method takes :class:`Filters` with ``since``/``until`` set
    (but :meth:`summary`, where none means everything recorded)."""

    def _union(
        self,
        filters: Filters,
        step: int,
        table: str,
        keys: str,
        sums: Sequence[str],
        raw: RawPart,
        *,
        rollable: bool = True,
        rollup_where: Sequence[tuple[str, Any]] = (),
    ) -> tuple[str, list[Any]]:
        """``UNION ALL`` of ``SELECT bucket, keys, sums`` per segment: ``raw(...)`` or ``rollup_{table}_*`` rows
        plus ``raw(...)`` of the segment's rows above the projection cursor.

        Roll-up rows come as they are (not grouped again: the caller adds them up, once, for all segments).
        ``rollup_where`` are ``(condition, value)`` pairs applied to the roll-up parts (``raw`` applies the filters
        to raw rows itself).
        """
        assert filters.since is not None and filters.until is not None, "the dashboard always sets a range"
        parts: list[str] = []
        params: list[Any] = []
        rolled = self._rolled and rollable and filters.rollable
        segments = plan(filters.since, filters.until, step, rolled=rolled)
        tail = rolled and any(s.source != "raw" for s in segments) and self.pending()
        bucket = _raw_bucket(self.dialect, step)
        for seg in segments:
            if seg.source == "raw":
                sql, seg_params = raw(replace(filters, since=seg.since, until=seg.until), bucket)
                parts.append(sql)
                params.extend(seg_params)
                continue
            conds = ["ts >= ?", "ts < ?"]
            params.extend([int(seg.since), int(seg.until)])
            for cond, value in rollup_where:
                conds.append(cond)
                params.append(value)
            rollup_bucket = f"(ts / {step}) * {step}" if step else "0"
            parts.append(
                f"SELECT {rollup_bucket} AS bucket, {keys}, {', '.join(sums)}"
                f" FROM rollup_{table}_{seg.source} WHERE {' AND '.join(conds)}"
            )
            if tail:
                sql, seg_params = raw(
                    replace(filters, since=seg.since, until=seg.until, after_id=self.cursor()), bucket
                )
                parts.append(sql)
                params.extend(seg_params)
        return " UNION ALL ".join(parts), params

    # -- calls: totals, series, per provider/model --

    @snapshotted
    def cube(self, filters: Filters, step: int = 0, by: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Sums per ``bucket`` (``step`` seconds; 0 = the whole range) and per ``by`` (provider, model)."""
        keys = ("bucket", *by)
        index = [("bucket", "provider", "model").index(k) for k in keys]
        acc = _add_up(list(self._cube_rows(filters, step).items()), lambda r: tuple(r[0][i] for i in index), 1)
        return [
            dict(zip(keys, key, strict=True)) | figures(zip(SUMS, sums, strict=True))
            for key, sums in sorted(acc.items())
        ]

    def _cube_rows(self, filters: Filters, step: int) -> dict[tuple[Any, ...], list[Any]]:
        """:data:`SUMS` as a list per ``(bucket, provider, model)``, added up over the segments of the range."""
        d = self.dialect
        cols = ", ".join(f"{e} AS {n}" for n, e in zip(SUMS, call_sum_exprs(d), strict=True))

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = f.conditions(dialect=d)
            sql = f"SELECT {bucket} AS bucket, provider, coalesce(model, '') AS model, {cols}"
            return f"{sql} FROM {CALLS} WHERE {cond} GROUP BY 1, 2, 3", params

        sub, params = self._union(
            filters, step, "calls", "provider, model", SUMS, raw, rollup_where=_model_conditions(filters)
        )
        rows = self._all(sub, params)  # a few thousand rows at most: cheaper to add up here than in SQL
        return _add_up(rows, lambda row: (int(row[0]), row[1], row[2]))

    def _hist_raw(self, by_model: bool) -> RawPart:
        d = self.dialect
        keys = "provider, coalesce(model, '') AS model, " if by_model else ""
        group = "1, 2, 3, 5" if by_model else "1, 3"

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = f.conditions(dialect=d)
            parts = [
                f"SELECT {bucket} AS bucket, {keys}'{metric}' AS metric, {hist_bucket(d, column)} AS hb,"
                f" count(*) AS n FROM {CALLS} WHERE {cond} AND {latency_known(column)} GROUP BY {group}"
                for metric, column in METRICS
            ]
            return " UNION ALL ".join(parts), params * len(METRICS)

        return raw

    @snapshotted
    def histograms(self, filters: Filters, step: int = 0) -> dict[int, dict[str, dict[int, int]]]:
        """Latency (``d``) and TTFT (``t``) log histograms ``{bucket: {metric: {hb: n}}}``."""
        if filters.provider is not None or filters.model is not None:
            result: dict[int, dict[str, dict[int, int]]] = {}
            for (bucket, _, _), hists in self._model_histograms(filters, step).items():
                merged = result.setdefault(bucket, {"d": {}, "t": {}})
                for metric, hist in hists.items():
                    for hb, n in hist.items():
                        merged[metric][hb] = merged[metric].get(hb, 0) + n
            return result
        sub, params = self._union(filters, step, "latency", "metric, hb", ("n",), self._hist_raw(False))
        result = {}
        sql = f"SELECT bucket, metric, hb, {self.dialect.total('n')} FROM ({sub}) AS u GROUP BY 1, 2, 3"
        for bucket, metric, hb, n in self._all(sql, params):
            result.setdefault(int(bucket), {"d": {}, "t": {}})[metric][int(hb)] = int(n)
        return result

    def _model_histograms(
        self, filters: Filters, step: int = 0
    ) -> dict[tuple[int, str, str], dict[str, dict[int, int]]]:
        """Latency and TTFT log histograms per ``(bucket, provider, model)``."""
        sub, params = self._union(
            filters,
            step,
            "latency_models",
            "provider, model, metric, hb",
            ("n",),
            self._hist_raw(True),
            rollup_where=_model_conditions(filters),
        )
        n = self.dialect.total("n")
        sql = f"SELECT bucket, provider, model, metric, hb, {n} FROM ({sub}) AS u GROUP BY 1, 2, 3, 4, 5"
        result: dict[tuple[int, str, str], dict[str, dict[int, int]]] = {}
        for bucket, provider, model, metric, hb, count in self._all(sql, params):
            result.setdefault((int(bucket), provider, model), {"d": {}, "t": {}})[metric][int(hb)] = int(count)
        return result

    @snapshotted
    def report(self, filters: Filters, step: int = 0, *, latency: bool = True, model_latency: bool = False) -> Report:
        """Totals, the time series (``step`` > 0) and the per-model and per-provider sums of the range.

        One query over (bucket, provider, model) sums, added up here every way the pages need, plus (unless
        ``latency`` is false) the latency histograms for the percentiles (and, with ``model_latency``, per model).
        """
        assert filters.since is not None and filters.until is not None
        cube = list(self._cube_rows(filters, step).items())
        hists = self.histograms(filters) if latency else {}
        buckets = _named(_add_up(cube, lambda r: r[0][0], 1))
        models = _named(_add_up(cube, lambda r: (r[0][1], r[0][2]), 1))
        providers = _named(_add_up(cube, lambda r: r[0][1], 1))
        overall = _finish(_named(_add_up(cube, lambda r: 0, 1)).get(0) or dict.fromkeys(SUMS, 0))
        overall.update(_latency(hists.get(0, _NO_HIST), p99=True))
        series = []
        if step:
            quantiles = self._series_quantiles(filters, step) if latency else {}
            for ts in bucket_starts(filters.since, filters.until, step):
                item = _finish(buckets.get(ts) or dict.fromkeys(SUMS, 0))
                item["ts"] = ts
                item.update(quantiles.get(ts) or dict.fromkeys(LATENCY_KEYS))
                series.append(item)
        model_hists = {}
        if latency and model_latency:
            model_hists = {(p, m): h for (_, p, m), h in self._model_histograms(filters).items()}
        by_model = [
            _finish({"provider": p, "model": m, **sums}) | _latency(model_hists.get((p, m), _NO_HIST), p99=True)
            for (p, m), sums in models.items()
        ]
        by_provider = [_finish({"provider": p, **sums}) for p, sums in providers.items()]
        return Report(
            totals=overall,
            series=series,
            by_model=sorted(by_model, key=lambda r: (-r["requests"], r["provider"], r["model"])),
            by_provider=sorted(by_provider, key=lambda r: (-r["requests"], r["provider"])),
        )

    def _series_quantiles(self, filters: Filters, step: int) -> dict[int, dict[str, float | None]]:
        """p50/p95 latency and TTFT per ``step`` bucket: precomputed for the buckets that are whole roll-up rows,
        from merged histograms for the (at most two) edge buckets and whenever the roll-ups cannot answer (also
        while rows above the projection cursor exist: the precomputed quantiles do not know them)."""
        assert filters.since is not None and filters.until is not None
        grain = {HOUR: "hour", DAY: "day"}.get(step)
        rollable = filters.rollable and filters.provider is None and filters.model is None
        lo, hi = math.ceil(filters.since / step) * step, math.floor(filters.until / step) * step
        if (
            grain is None
            or not (self._rolled and rollable)
            or lo >= hi
            or filters.until - filters.since <= RAW_MAX_SPAN
            or self.pending()
        ):
            return {ts: _latency(h) for ts, h in self.histograms(filters, step).items()}
        out: dict[int, dict[str, float | None]] = {}
        for ts, metric, p50, p95 in self._all(
            f"SELECT ts, metric, p50, p95 FROM rollup_quantiles_{grain} WHERE ts >= ? AND ts < ?", [lo, hi]
        ):
            item = out.setdefault(int(ts), dict.fromkeys(LATENCY_KEYS))
            name = "latency" if metric == "d" else "ttft"
            item[f"{name}_p50_ms"], item[f"{name}_p95_ms"] = p50, p95
        for since, until in ((filters.since, lo), (hi, filters.until)):
            if since < until:
                edge = replace(filters, since=since, until=until)
                out.update({ts: _latency(h) for ts, h in self.histograms(edge, step).items()})
        return out

    @snapshotted
    def summary(self, filters: Filters) -> dict[str, Any]:
        """What ``GET api/summary`` answers: totals, error rate, p50/p95/p99 latency and p50/p95 TTFT, overall and
        per provider+model, from the roll-ups. Without ``since``/``until`` the range is everything recorded.

        Percentiles are log-histogram estimates within ±4.5 % (see :data:`~.aggregates.HIST_PER_DOUBLING`).
        """
        if filters.since is None or filters.until is None:
            # two statements, each one index probe (the time stamps a date can show: a foreign writer's inf or
            # NaN, which PostgreSQL sorts above every number, is no bound)
            bounded = f"FROM {CALLS} WHERE started_at >= ? AND started_at <= ? ORDER BY started_at"
            first = self._all(f"SELECT started_at {bounded} LIMIT 1", [MIN_TIME, MAX_TIME])
            last = self._all(f"SELECT started_at {bounded} DESC LIMIT 1", [MIN_TIME, MAX_TIME])
            first_ts = float(first[0][0]) if first else 0.0
            last_ts = float(last[0][0]) if last else 0.0
            filters = replace(
                filters,
                since=filters.since if filters.since is not None else math.floor(first_ts),
                until=filters.until if filters.until is not None else math.floor(last_ts) + 1,
            )
        report = self.report(filters, model_latency=True)
        keys = (
            *SUMMARY_SUMS,
            "error_rate",
            "latency_mean_ms",
            "ttft_mean_ms",
            "cost_unknown",
            *LATENCY_KEYS,
            "latency_p99_ms",
        )
        out: dict[str, Any] = {k: report.totals[k] for k in keys}
        out["by_model"] = [
            {"provider": row["provider"], "model": row["model"] or None, **{k: row[k] for k in keys}}
            for row in report.by_model
        ]
        return out

    @snapshotted
    def totals(self, filters: Filters) -> dict[str, Any]:
        """Sums, derived rates and p50/p95 latency and TTFT over the whole range."""
        return self.report(filters).totals

    @snapshotted
    def unpriced(self, filters: Filters) -> list[dict[str, Any]]:
        """Calls with tokens (input or output known) but no cost, per ``provider``/``model`` (``None`` when unknown)
        as ``calls``, most first: the models a price is missing for (failed calls without tokens are not here)."""
        rows = [
            {"provider": r["provider"], "model": r["model"] or None, "calls": r["unpriced"]}
            for r in self.cube(filters, 0, ("provider", "model"))
            if r["unpriced"]
        ]
        return sorted(rows, key=lambda r: (-r["calls"], r["provider"], r["model"] or ""))

    # -- dimensions: route, user, tag, status, error_type --

    @snapshotted
    def by_dim(
        self, filters: Filters, dim: str, *, order: str = "cost", limit: int = 10, errors_only: bool = False
    ) -> list[dict[str, Any]]:
        """Top ``limit`` values of ``dim`` by ``order`` (``cost``, ``requests`` or ``errors``) in the range.

        ``errors_only``: count failed calls only (``requests`` equals ``errors``; tokens and cost are ``None``;
        ranked by errors whatever ``order`` says), which raw rows answer through the partial error index when the
        roll-ups cannot.
        """
        if dim not in DIMENSIONS or order not in ("cost", "requests", "errors"):
            raise ValueError(f"unknown dimension or order: {dim!r}, {order!r}")
        d = self.dialect
        value, source, cond0 = dim_sources(d)[dim]
        cols = ", ".join(f"{e} AS {n}" for n, e in zip(DIM_SUMS, dim_sum_exprs(d), strict=True))

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = (replace(f, ok=False) if errors_only else f).conditions(dialect=d)
            sql = f"SELECT {bucket} AS bucket, '{dim}' AS dim, {value} AS value, {cols}"
            return f"{sql} {source} WHERE {cond} AND {cond0} GROUP BY 1, 3", params

        # the dims roll-up has no provider/model: with those filters the whole range comes from raw rows
        rollable = filters.provider is None and filters.model is None
        sub, params = self._union(
            filters, 0, "dims", "dim, value", DIM_SUMS, raw, rollable=rollable, rollup_where=[("dim = ?", dim)]
        )
        # errors only: the roll-ups' requests and cost are of every call, so only their errors can rank
        column = "errors" if errors_only else {"cost": "cost_usd", "requests": "requests", "errors": "errors"}[order]
        sums = ", ".join(f"{d.total(n)} AS {n}" for n in DIM_SUMS)
        sql = (
            f"SELECT value, {sums} FROM ({sub}) AS u GROUP BY value"
            f" HAVING {d.total(column)} > 0 ORDER BY {_round9(d, d.total(column))} DESC, {text_order(d, 'value')}"
            " LIMIT ?"
        )
        rows = [figures(zip(("value", *DIM_SUMS), r, strict=True)) for r in self._all(sql, [*params, limit])]
        if errors_only:
            for row in rows:
                row.update(
                    requests=row["errors"],
                    input_tokens=None,
                    output_tokens=None,
                    total_tokens=None,
                    cost_usd=None,
                    cost_n=None,
                )
        return [_finish_dim(row) for row in rows]

    # -- rows --

    @snapshotted
    def count(self, filters: Filters) -> int:
        """How many calls match ``filters`` (from the roll-ups when they can answer)."""
        everything = replace(filters, ok=None)
        if everything.rollable and self._rolled:
            rows = self.cube(everything)
            requests, errors = (rows[0]["requests"], rows[0]["errors"]) if rows else (0, 0)
            if filters.ok is None:
                return requests
            return requests - errors if filters.ok else errors
        cond, params = filters.conditions(dialect=self.dialect)
        return int(self._all(f"SELECT count(*) FROM {CALLS} WHERE {cond}", params)[0][0])

    @snapshotted
    def facets(self, filters: Filters) -> dict[str, list[str]]:
        """Values to offer in the filter controls: providers and models in the range, top routes and users."""
        unfiltered = Filters(since=filters.since, until=filters.until)
        models = self.cube(unfiltered, 0, ("provider", "model"))
        return {
            "providers": sorted({r["provider"] for r in models}),
            "models": sorted({r["model"] for r in models if r["model"]}),
            "routes": sorted(r["value"] for r in self.by_dim(unfiltered, "route", order="requests", limit=100)),
            "users": sorted(r["value"] for r in self.by_dim(unfiltered, "user", order="requests", limit=100)),
        }


def _add_up(rows: Sequence[Sequence[Any]], key: Callable[[Any], Any], start: int = 3) -> dict[Any, list[Any]]:
    """Add up, per ``key(row)``, the :data:`SUMS` of ``rows``: ``row[start:]``, or ``row[start]`` if a list."""
    groups: dict[Any, list[Sequence[Any]]] = {}
    for row in rows:
        values = row[start] if isinstance(row[start], list) else row[start:]
        group = groups.get(k := key(row))
        if group is None:
            groups[k] = [values]
        else:
            group.append(values)
    # column sums through zip/sum run in C: several times faster than adding element by element
    return {k: list(vs[0]) if len(vs) == 1 else [sum(col) for col in zip(*vs, strict=True)] for k, vs in groups.items()}


def _named(sums: dict[Any, list[Any]]) -> dict[Any, dict[str, Any]]:
    return {k: figures(zip(SUMS, v, strict=True)) for k, v in sums.items()}


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Derived figures: error rate, mean latency/TTFT, cached share of input tokens (``None`` when unknown)."""
    out = dict(row)
    requests = out.get("requests") or 0
    out["error_rate"] = (out["errors"] / requests) if requests else None
    out["latency_mean_ms"] = _ratio(out.get("duration_sum"), out.get("duration_n"))
    out["ttft_mean_ms"] = _ratio(out.get("ttft_sum"), out.get("ttft_n"))
    out["cached_share"] = _ratio(out.get("cached_tokens"), out.get("input_tokens"))
    out["cost_unknown"] = requests - (out.get("cost_n") or 0)
    return out


def _ratio(part: float | None, whole: float | None) -> float | None:
    """``part / whole``, ``None`` when either is unknown or ``whole`` is 0."""
    return part / whole if part is not None and whole else None


def _finish_dim(row: dict[str, Any]) -> dict[str, Any]:
    requests = row["requests"] or 0
    row["error_rate"] = (row["errors"] / requests) if requests else None
    if not row.get("cost_n"):  # none of its calls was priced: the cost is unknown, not zero
        row["cost_usd"] = None
    return row


def _latency(hist: dict[str, dict[int, int]], *, p99: bool = False) -> dict[str, float | None]:
    out = {
        "latency_p50_ms": percentile(hist["d"], 0.5),
        "latency_p95_ms": percentile(hist["d"], 0.95),
        "ttft_p50_ms": percentile(hist["t"], 0.5),
        "ttft_p95_ms": percentile(hist["t"], 0.95),
    }
    if p99:
        out["latency_p99_ms"] = percentile(hist["d"], 0.99)
    return out
