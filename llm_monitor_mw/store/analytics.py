"""The dashboard's read side: KPIs, time series, breakdowns, request pages and exports over the ``calls`` table.

All SQL of the dashboard lives here. Long ranges are answered from roll-ups so that a page stays fast at a
million rows:

* ``rollup_calls_{hour,day}`` — per (UTC hour/day, provider, model): counts, errors, 429s, token and cost sums,
  latency and TTFT sums;
* ``rollup_latency_{hour,day}`` — per (hour/day, metric, bucket): a log-scale histogram of ``duration_ms``
  (metric ``d``) and ``ttft_ms`` (metric ``t``), 8 buckets per doubling, so percentiles are estimates within
  ±4.5 %; it has no provider/model (that would make it as large as the raw table), so percentiles of a
  provider/model-filtered range come from raw rows;
* ``rollup_quantiles_{hour,day}`` — p50/p95 of each metric per hour/day, recomputed from the histogram of every
  hour/day a refresh touched, so a latency series needs no histogram merging except in its two edge buckets;
* ``rollup_dims_{hour,day}`` — per (dimension, hour/day, value) for route, user, tag (``key:value``), status
  code and error type: counts, tokens and cost.

Roll-ups are additive and are brought up to date incrementally by row id (``rollup_state.last_id``) whenever the
dashboard reads (a ``SELECT max(id)`` when nothing is new), in ``BEGIN IMMEDIATE`` transactions of at most
:data:`CHUNK` rows, so late-arriving rows and several writer processes are handled. A range is answered from whole
days, whole hours and raw rows at its edges (see :func:`plan`), so sums are exact at any boundary.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .database import Database
from .queries import API_COLUMNS, Filters
from .schema import CALLS
from .values import PLAUSIBLE, plausible, stored_tags

logger = logging.getLogger("llm_monitor_mw")

HOUR = 3600
DAY = 86400
RAW_MAX_SPAN = 3 * HOUR
"""Ranges up to this long are answered from raw rows (minute buckets; roll-ups are hourly)."""
CHUNK = 200_000
"""Rows rolled up per write transaction, so the writer never waits long for the lock."""
HIST_PER_DOUBLING = 8
"""Log-histogram resolution: a bucket spans a factor 2**(1/8); its midpoint is within ±4.5 % of any value in it."""
DIMENSIONS = ("route", "user", "tag", "status", "error_type")
SORTABLE = {
    "time": "started_at",
    "provider": "provider",
    "model": "model",
    "status": "status_code",
    "duration": "duration_ms",
    "ttft": "ttft_ms",
    "input": "input_tokens",
    "output": "output_tokens",
    "tokens": "total_tokens",
    "cost": "cost_usd",
}
"""Sort keys the requests page accepts, mapped to their (whitelisted) columns."""

_SUMS = (
    "requests",
    "errors",
    "n429",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "tokens_n",
    "cost_usd",
    "cost_n",
    "duration_sum",
    "duration_n",
    "ttft_sum",
    "ttft_n",
)


# Every sum is total(): SQLite's sum() raises "integer overflow" past 2**63 (one stored 2**63-1 token count would
# break every later read), total() answers a float and never raises; integer figures are made ints again in Python.
_RAW_SUMS = (
    "count(*)",
    "count(CASE WHEN ok = 0 THEN 1 END)",
    "count(CASE WHEN status_code = 429 THEN 1 END)",
    f"total({plausible('input_tokens')})",
    f"total({plausible('output_tokens')})",
    f"total({plausible('total_tokens')})",
    f"total({plausible('cached_tokens')})",
    f"total({plausible('reasoning_tokens')})",
    f"count({plausible('total_tokens')})",
    f"total({plausible('cost_usd')})",
    f"count({plausible('cost_usd')})",
    f"total({plausible('duration_ms')})",
    f"count({plausible('duration_ms')})",
    f"total({plausible('ttft_ms')})",
    f"count({plausible('ttft_ms')})",
)
_FLOAT_SUMS = frozenset({"cost_usd", "duration_sum", "ttft_sum"})
"""The :data:`_SUMS` (and :data:`_DIM_SUMS`) that are floats; the others are counts and token sums, ints."""
_DIM_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost_usd")
_DIM_RAW_SUMS = (
    "count(*)",
    "count(CASE WHEN ok = 0 THEN 1 END)",
    f"total({plausible('input_tokens')})",
    f"total({plausible('output_tokens')})",
    f"total({plausible('total_tokens')})",
    f"total({plausible('cost_usd')})",
)
_DIM_RAW_SOURCES = {
    "route": ("route", f"FROM {CALLS}", "route IS NOT NULL"),
    "user": ('"user"', f"FROM {CALLS}", '"user" IS NOT NULL'),
    "status": ("coalesce(CAST(status_code AS TEXT), 'none')", f"FROM {CALLS}", "1"),
    "error_type": ("coalesce(error_type, '')", f"FROM {CALLS}", "ok = 0"),
    # tags a foreign writer stored as anything but a JSON object are no tags (json_each raises on invalid JSON, and
    # a scalar would give a NULL key); nested CASE, because SQLite does not promise that AND short-cuts
    "tag": (
        "j.key || ':' || coalesce(j.value, '')",
        f"FROM {CALLS}, json_each(CASE WHEN json_valid({CALLS}.tags) THEN"
        f" CASE json_type({CALLS}.tags) WHEN 'object' THEN {CALLS}.tags END END) AS j",
        "tags IS NOT NULL",
    ),
}
_HIST_BUCKET = f"CAST(floor(log2(max({{col}}, 0.001)) * {HIST_PER_DOUBLING}) AS INTEGER)"
_HAS = f"{{col}} > -{PLAUSIBLE} AND {{col}} < {PLAUSIBLE}"
"""A plausible latency (an infinite one would fall in a bucket whose midpoint overflows a float)."""


def ensure(db: Database) -> None:
    """Bring the roll-ups (tables of schema migration 3) up to date with ``calls``.

    The first call on a large database that predates the roll-ups rolls up every row, in chunks of :data:`CHUNK`
    (about 35 s per million rows on a 2-vCPU VM).
    """
    Rollups(db).refresh()


# ---- time windows -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of a time range answered from one source: ``raw`` rows, or the ``hour``/``day`` roll-ups."""

    source: str
    since: float
    until: float


def plan(since: float, until: float, step: int, *, rolled: bool = True) -> list[Segment]:
    """Split ``[since, until)`` into raw edges, whole hours and whole days (only granularities ``<= step``).

    ``step`` 0 means one bucket for the whole range, which every granularity divides.
    """
    step = step or DAY
    if not rolled or until - since <= RAW_MAX_SPAN or step < HOUR:
        return [Segment("raw", since, until)]
    h0, h1 = math.ceil(since / HOUR) * HOUR, math.floor(until / HOUR) * HOUR
    if h0 >= h1:
        return [Segment("raw", since, until)]
    segments = [Segment("raw", since, h0)] if since < h0 else []
    d0, d1 = math.ceil(h0 / DAY) * DAY, math.floor(h1 / DAY) * DAY
    if step >= DAY and d0 < d1:
        if h0 < d0:
            segments.append(Segment("hour", h0, d0))
        segments.append(Segment("day", d0, d1))
        if d1 < h1:
            segments.append(Segment("hour", d1, h1))
    else:
        segments.append(Segment("hour", h0, h1))
    if h1 < until:
        segments.append(Segment("raw", h1, until))
    return segments


def bucket_starts(since: float, until: float, step: int) -> list[int]:
    """Start of every ``step``-second bucket (aligned to the epoch, UTC) that overlaps ``[since, until)``."""
    first = math.floor(since / step) * step
    return list(range(first, math.ceil(until / step) * step, step)) or [first]


def percentile(hist: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile from a log histogram ``{bucket: count}``: the bucket's geometric midpoint."""
    n = sum(hist.values())
    if not n:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return 2 ** ((b + 0.5) / HIST_PER_DOUBLING)
    return None  # pragma: no cover - unreachable: the ranks add up to n


# ---- roll-up maintenance ----------------------------------------------------------------------------------------


class Rollups:
    """Keeps the roll-up tables in step with ``calls``, incrementally by row id."""

    _math_checked: dict[int, bool] = {}
    _lock = threading.Lock()

    def __init__(self, db: Database) -> None:
        self.db = db

    def refresh(self) -> None:
        """Roll up every row added since the last refresh (nothing to do costs one indexed ``max(id)``)."""
        conn = connection(self.db)
        top = conn.execute(f"SELECT max(id) FROM {CALLS}").fetchone()[0] or 0
        last = _last_id(conn)
        while last < top:
            hi = min(top, last + CHUNK)
            self.db.write(lambda c, hi=hi: self._roll(c, hi))
            last = hi

    @staticmethod
    def _roll(conn: sqlite3.Connection, hi: int) -> None:
        lo = _last_id(conn)  # re-read under the write lock: another process may have rolled up meanwhile
        if lo >= hi:
            return
        key = f"CAST(started_at / {HOUR} AS INTEGER) * {HOUR}"
        main = ", ".join(f"{expr} AS {name}" for name, expr in zip(_SUMS, _RAW_SUMS, strict=True))
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _rollup_calls AS SELECT * FROM rollup_calls_hour WHERE 0")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _rollup_latency AS SELECT * FROM rollup_latency_hour WHERE 0")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _rollup_dims AS SELECT * FROM rollup_dims_hour WHERE 0")
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _rollup_latency_models AS SELECT * FROM rollup_latency_models_hour WHERE 0"
        )
        for table in ("_rollup_calls", "_rollup_latency", "_rollup_dims", "_rollup_latency_models"):
            conn.execute(f"DELETE FROM temp.{table}")
        rows = f"{CALLS}.id > ? AND {CALLS}.id <= ?"
        conn.execute(
            f"""INSERT INTO temp._rollup_calls SELECT {key}, provider, coalesce(model, ''), {main}
                FROM {CALLS} WHERE {rows} GROUP BY 1, 2, 3""",
            (lo, hi),
        )
        for metric, column in (("d", "duration_ms"), ("t", "ttft_ms")):
            conn.execute(
                f"""INSERT INTO temp._rollup_latency_models
                    SELECT {key}, provider, coalesce(model, ''), '{metric}', {_HIST_BUCKET.format(col=column)}, count(*)
                    FROM {CALLS} WHERE {rows} AND {_HAS.format(col=column)} GROUP BY 1, 2, 3, 5""",
                (lo, hi),
            )
        conn.execute(
            """INSERT INTO temp._rollup_latency SELECT ts, metric, hb, total(n)
               FROM temp._rollup_latency_models GROUP BY 1, 2, 3"""
        )
        dim_sums = ", ".join(_DIM_RAW_SUMS)
        for dim, (value, source, cond) in _DIM_RAW_SOURCES.items():
            conn.execute(
                f"""INSERT INTO temp._rollup_dims SELECT {key}, '{dim}', {value}, {dim_sums}
                    {source} WHERE {rows} AND {cond} GROUP BY 1, 3""",
                (lo, hi),
            )
        for table, keys, sums in (
            ("calls", ("ts", "provider", "model"), _SUMS),
            ("latency", ("ts", "metric", "hb"), ("n",)),
            ("latency_models", ("ts", "provider", "model", "metric", "hb"), ("n",)),
            ("dims", ("ts", "dim", "value"), _DIM_SUMS),
        ):
            update = ", ".join(f"{c} = {c} + excluded.{c}" for c in sums)
            for grain, ts in (("hour", "ts"), ("day", f"ts - ts % {DAY}")):
                others = ", ".join(keys[1:])
                select = f"SELECT {ts}, {others}, {', '.join(f'total({c})' for c in sums)}"
                conn.execute(
                    f"""INSERT INTO rollup_{table}_{grain} ({", ".join(keys)}, {", ".join(sums)})
                        {select} FROM temp._rollup_{table} GROUP BY {", ".join(str(i + 1) for i in range(len(keys)))}
                        ON CONFLICT ({", ".join(keys)}) DO UPDATE SET {update}"""
                )
        for grain, ts in (("hour", "ts"), ("day", f"ts - ts % {DAY}")):
            touched = [r[0] for r in conn.execute(f"SELECT DISTINCT {ts} FROM temp._rollup_latency")]
            _requantile(conn, grain, touched)
        conn.execute(
            "INSERT INTO rollup_state (name, last_id) VALUES ('calls', ?)"
            " ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
            (hi,),
        )


def _requantile(conn: sqlite3.Connection, grain: str, touched: list[int]) -> None:
    """Recompute ``rollup_quantiles_{grain}`` for the buckets in ``touched`` from their histograms."""
    for start in range(0, len(touched), 500):
        chunk = touched[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        hists: dict[tuple[int, str], dict[int, int]] = {}
        for ts, metric, hb, n in conn.execute(
            f"SELECT ts, metric, hb, n FROM rollup_latency_{grain} WHERE ts IN ({marks})", chunk
        ):
            hists.setdefault((ts, metric), {})[hb] = n
        conn.executemany(
            f"INSERT OR REPLACE INTO rollup_quantiles_{grain} (ts, metric, p50, p95) VALUES (?, ?, ?, ?)",
            [(ts, metric, percentile(h, 0.5), percentile(h, 0.95)) for (ts, metric), h in hists.items()],
        )


def _last_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT last_id FROM rollup_state WHERE name = 'calls'").fetchone()
    return row[0] if row else 0


def connection(db: Database) -> sqlite3.Connection:
    """This thread's connection, with ``log2``/``floor`` registered when SQLite lacks its math functions."""
    conn = db.connect().conn
    key = id(conn)
    if key not in Rollups._math_checked:
        with Rollups._lock:
            try:
                conn.execute("SELECT log2(2), floor(1.5)").fetchone()
            except sqlite3.OperationalError:
                conn.create_function("log2", 1, lambda x: math.log2(x) if x and x > 0 else None, deterministic=True)
                conn.create_function("floor", 1, lambda x: None if x is None else math.floor(x), deterministic=True)
            Rollups._math_checked[key] = True
    return conn


# ---- queries ----------------------------------------------------------------------------------------------------


def where(filters: Filters, *, time: bool = True) -> tuple[str, list[Any]]:
    """``filters`` as one SQL condition over ``calls`` (see :meth:`Filters.conditions`)."""
    return filters.conditions(time=time)


def _rollable(filters: Filters) -> bool:
    """Whether the roll-ups can answer ``filters`` (time, provider and model only)."""
    return filters.route is None and filters.user is None and filters.tag is None and not filters.q


def _row_dict(columns: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    # a non-finite float (stored by an old or foreign writer) is unknown: JSON has no Infinity
    row = {c: None if v.__class__ is float and v - v != 0.0 else v for c, v in zip(columns, values, strict=True)}
    if "tags" in row:
        row["tags"] = stored_tags(row["tags"])
    for flag in ("ok", "streamed"):
        if flag in row:
            row[flag] = bool(row[flag])
    return row


class Analytics:
    """Read-only questions of the dashboard. Every method takes :class:`Filters` with ``since``/``until`` set.

    ``use_rollups=False`` answers everything from raw rows (for comparisons; the figures are the same).
    """

    def __init__(self, db: Database, *, use_rollups: bool = True) -> None:
        self.db = db
        self.rollups = Rollups(db)
        self._ready = not use_rollups
        self._rolled = False

    # -- plumbing --

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, with the roll-ups created and up to date (raw queries only if that fails)."""
        if not self._ready:
            try:
                ensure(self.db)
                self._rolled = True
            except sqlite3.Error:
                logger.exception("llm_monitor_mw: cannot create the dashboard roll-ups; answering from raw rows")
            self._ready = True
        elif self._rolled:
            try:
                self.rollups.refresh()
            except sqlite3.Error:
                logger.exception("llm_monitor_mw: roll-up refresh failed; answering from raw rows")
        return connection(self.db)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, list(params)).fetchall()

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
        """``UNION ALL`` of ``SELECT bucket, keys, sums`` per segment: ``raw(...)`` or ``rollup_{table}_*`` rows.

        Roll-up rows come as they are (not grouped again: the caller adds them up, once, for all segments).
        ``rollup_where`` are ``(condition, value)`` pairs applied to the roll-up parts (``raw`` applies the filters
        to raw rows itself).
        """
        assert filters.since is not None and filters.until is not None, "the dashboard always sets a range"
        self._conn()  # creates/refreshes the roll-ups, so self._rolled is known before planning
        parts: list[str] = []
        params: list[Any] = []
        rolled = self._rolled and rollable and _rollable(filters)
        for seg in plan(filters.since, filters.until, step, rolled=rolled):
            if seg.source == "raw":
                sql, seg_params = raw(replace(filters, since=seg.since, until=seg.until), _raw_bucket(step))
                parts.append(sql)
                params.extend(seg_params)
                continue
            conds = ["ts >= ?", "ts < ?"]
            params.extend([int(seg.since), int(seg.until)])
            for cond, value in rollup_where:
                conds.append(cond)
                params.append(value)
            bucket = f"(ts / {step}) * {step}" if step else "0"
            parts.append(
                f"SELECT {bucket} AS bucket, {keys}, {', '.join(sums)}"
                f" FROM rollup_{table}_{seg.source} WHERE {' AND '.join(conds)}"
            )
        return " UNION ALL ".join(parts), params

    # -- calls: totals, series, per provider/model --

    def cube(self, filters: Filters, step: int = 0, by: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Sums per ``bucket`` (``step`` seconds; 0 = the whole range) and per ``by`` (provider, model)."""
        keys = ("bucket", *by)
        index = [("bucket", "provider", "model").index(k) for k in keys]
        acc = _add_up(list(self._cube_rows(filters, step).items()), lambda r: tuple(r[0][i] for i in index), 1)
        return [
            dict(zip(keys, key, strict=True)) | _figures(zip(_SUMS, sums, strict=True))
            for key, sums in sorted(acc.items())
        ]

    def _cube_rows(self, filters: Filters, step: int) -> dict[tuple[Any, ...], list[Any]]:
        """:data:`_SUMS` as a list per ``(bucket, provider, model)``, added up over the segments of the range."""

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = where(f)
            cols = ", ".join(f"{e} AS {n}" for n, e in zip(_SUMS, _RAW_SUMS, strict=True))
            sql = f"SELECT {bucket} AS bucket, provider, coalesce(model, '') AS model, {cols}"
            return f"{sql} FROM {CALLS} WHERE {cond} GROUP BY 1, 2, 3", params

        sub, params = self._union(
            filters, step, "calls", "provider, model", _SUMS, raw, rollup_where=_model_conditions(filters)
        )
        rows = self._all(sub, params)  # a few thousand rows at most: cheaper to add up here than in SQL
        return _add_up(rows, lambda row: row[:3])

    def histograms(self, filters: Filters, step: int = 0) -> dict[int, dict[str, dict[int, int]]]:
        """Latency (``d``) and TTFT (``t``) log histograms ``{bucket: {metric: {hb: n}}}``."""

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = where(f)
            parts = [
                f"SELECT {bucket} AS bucket, '{metric}' AS metric, {_HIST_BUCKET.format(col=column)} AS hb,"
                f" count(*) AS n FROM {CALLS} WHERE {cond} AND {_HAS.format(col=column)} GROUP BY 1, 3"
                for metric, column in (("d", "duration_ms"), ("t", "ttft_ms"))
            ]
            return " UNION ALL ".join(parts), params * 2

        if filters.provider is not None or filters.model is not None:
            by_model = self._model_histograms(filters, step)
            result: dict[int, dict[str, dict[int, int]]] = {}
            for (bucket, _, _), hists in by_model.items():
                merged = result.setdefault(bucket, {"d": {}, "t": {}})
                for metric, hist in hists.items():
                    for hb, n in hist.items():
                        merged[metric][hb] = merged[metric].get(hb, 0) + n
            return result
        sub, params = self._union(filters, step, "latency", "metric, hb", ("n",), raw)
        result = {}
        for bucket, metric, hb, n in self._all(
            f"SELECT bucket, metric, hb, total(n) FROM ({sub}) GROUP BY 1, 2, 3", params
        ):
            result.setdefault(bucket, {"d": {}, "t": {}})[metric][hb] = int(n)
        return result

    def _model_histograms(
        self, filters: Filters, step: int = 0
    ) -> dict[tuple[int, str, str], dict[str, dict[int, int]]]:
        """Latency and TTFT log histograms per ``(bucket, provider, model)``."""

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = where(f)
            parts = [
                f"SELECT {bucket} AS bucket, provider, coalesce(model, '') AS model, '{metric}' AS metric,"
                f" {_HIST_BUCKET.format(col=column)} AS hb, count(*) AS n"
                f" FROM {CALLS} WHERE {cond} AND {_HAS.format(col=column)} GROUP BY 1, 2, 3, 5"
                for metric, column in (("d", "duration_ms"), ("t", "ttft_ms"))
            ]
            return " UNION ALL ".join(parts), params * 2

        sub, params = self._union(
            filters,
            step,
            "latency_models",
            "provider, model, metric, hb",
            ("n",),
            raw,
            rollup_where=_model_conditions(filters),
        )
        sql = f"SELECT bucket, provider, model, metric, hb, total(n) FROM ({sub}) GROUP BY 1, 2, 3, 4, 5"
        result: dict[tuple[int, str, str], dict[str, dict[int, int]]] = {}
        for bucket, provider, model, metric, hb, n in self._all(sql, params):
            result.setdefault((bucket, provider, model), {"d": {}, "t": {}})[metric][hb] = int(n)
        return result

    def report(self, filters: Filters, step: int = 0, *, latency: bool = True, model_latency: bool = False) -> Report:
        """Totals, the time series (``step`` > 0) and the per-model and per-provider sums of the range.

        One query over (bucket, provider, model) sums, added up here every way the pages need, plus (unless
        ``latency`` is false) the latency histograms for the percentiles (and, with ``model_latency``, per model).
        """
        assert filters.since is not None and filters.until is not None
        cube = [(key, sums) for key, sums in self._cube_rows(filters, step).items()]
        hists = self.histograms(filters) if latency else {}
        buckets = _named(_add_up(cube, lambda r: r[0][0], 1))
        models = _named(_add_up(cube, lambda r: (r[0][1], r[0][2]), 1))
        providers = _named(_add_up(cube, lambda r: r[0][1], 1))
        overall = _finish(_named(_add_up(cube, lambda r: 0, 1)).get(0) or dict.fromkeys(_SUMS, 0))
        overall.update(_latency(hists.get(0, _NO_HIST), p99=True))
        series = []
        if step:
            quantiles = self._series_quantiles(filters, step) if latency else {}
            for ts in bucket_starts(filters.since, filters.until, step):
                item = _finish(buckets.get(ts) or dict.fromkeys(_SUMS, 0))
                item["ts"] = ts
                item.update(quantiles.get(ts) or dict.fromkeys(_LATENCY_KEYS))
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
        from merged histograms for the (at most two) edge buckets and whenever the roll-ups cannot answer."""
        assert filters.since is not None and filters.until is not None
        grain = {HOUR: "hour", DAY: "day"}.get(step)
        rollable = _rollable(filters) and filters.provider is None and filters.model is None
        lo, hi = math.ceil(filters.since / step) * step, math.floor(filters.until / step) * step
        self._conn()
        if (
            grain is None
            or not (self._rolled and rollable)
            or lo >= hi
            or filters.until - filters.since <= RAW_MAX_SPAN
        ):
            return {ts: _latency(h) for ts, h in self.histograms(filters, step).items()}
        out: dict[int, dict[str, float | None]] = {}
        for ts, metric, p50, p95 in self._all(
            f"SELECT ts, metric, p50, p95 FROM rollup_quantiles_{grain} WHERE ts >= ? AND ts < ?", [lo, hi]
        ):
            item = out.setdefault(ts, dict.fromkeys(_LATENCY_KEYS))
            name = "latency" if metric == "d" else "ttft"
            item[f"{name}_p50_ms"], item[f"{name}_p95_ms"] = p50, p95
        for since, until in ((filters.since, lo), (hi, filters.until)):
            if since < until:
                edge = replace(filters, since=since, until=until)
                out.update({ts: _latency(h) for ts, h in self.histograms(edge, step).items()})
        return out

    def summary(self, filters: Filters) -> dict[str, Any]:
        """What ``GET api/summary`` answers: totals, error rate, p50/p95/p99 latency and p50/p95 TTFT, overall and
        per provider+model, from the roll-ups. Without ``since``/``until`` the range is everything recorded.

        Percentiles are log-histogram estimates within ±4.5 % (see :data:`HIST_PER_DOUBLING`).
        """
        if filters.since is None or filters.until is None:
            # two statements: SQLite answers a lone min() or max() from the index, both together by a full scan
            first = self._all(f"SELECT min(started_at) FROM {CALLS}")[0][0]
            last = self._all(f"SELECT max(started_at) FROM {CALLS}")[0][0]
            first, last = _finite_time(first), _finite_time(last)
            filters = replace(
                filters,
                since=filters.since if filters.since is not None else math.floor(first),
                until=filters.until if filters.until is not None else math.floor(last) + 1,
            )
        report = self.report(filters, model_latency=True)
        keys = (
            *_SUMMARY_SUMS,
            "error_rate",
            "latency_mean_ms",
            "ttft_mean_ms",
            "cost_unknown",
            *_LATENCY_KEYS,
            "latency_p99_ms",
        )
        out: dict[str, Any] = {k: report.totals[k] for k in keys}
        out["by_model"] = [
            {"provider": row["provider"], "model": row["model"] or None, **{k: row[k] for k in keys}}
            for row in report.by_model
        ]
        return out

    def totals(self, filters: Filters) -> dict[str, Any]:
        """Sums, derived rates and p50/p95 latency and TTFT over the whole range."""
        return self.report(filters).totals

    # -- dimensions: route, user, tag, status, error_type --

    def by_dim(
        self, filters: Filters, dim: str, *, order: str = "cost", limit: int = 10, errors_only: bool = False
    ) -> list[dict[str, Any]]:
        """Top ``limit`` values of ``dim`` by ``order`` (``cost``, ``requests`` or ``errors``) in the range.

        ``errors_only``: count failed calls only (``requests`` equals ``errors``; tokens and cost are ``None``),
        which raw rows answer through the partial error index when the roll-ups cannot.
        """
        if dim not in DIMENSIONS or order not in ("cost", "requests", "errors"):
            raise ValueError(f"unknown dimension or order: {dim!r}, {order!r}")
        value, source, cond0 = _DIM_RAW_SOURCES[dim]

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = where(replace(f, ok=False) if errors_only else f)
            cols = ", ".join(f"{e} AS {n}" for n, e in zip(_DIM_SUMS, _DIM_RAW_SUMS, strict=True))
            sql = f"SELECT {bucket} AS bucket, '{dim}' AS dim, {value} AS value, {cols}"
            return f"{sql} {source} WHERE {cond} AND {cond0} GROUP BY 1, 3", params

        # the dims roll-up has no provider/model: with those filters the whole range comes from raw rows
        rollable = filters.provider is None and filters.model is None
        sub, params = self._union(
            filters, 0, "dims", "dim, value", _DIM_SUMS, raw, rollable=rollable, rollup_where=[("dim = ?", dim)]
        )
        column = {"cost": "cost_usd", "requests": "requests", "errors": "errors"}[order]
        sums = ", ".join(f"total({n}) AS {n}" for n in _DIM_SUMS)
        sql = (
            f"SELECT value, {sums} FROM ({sub}) GROUP BY value"
            f" HAVING total({column}) > 0 ORDER BY round(total({column}), 9) DESC, value LIMIT ?"
        )
        rows = [_figures(zip(("value", *_DIM_SUMS), r, strict=True)) for r in self._all(sql, [*params, limit])]
        if errors_only:
            for row in rows:
                row.update(
                    requests=row["errors"], input_tokens=None, output_tokens=None, total_tokens=None, cost_usd=None
                )
        return [_finish_dim(row) for row in rows]

    # -- rows --

    def has_calls(self) -> bool:
        """Whether anything was ever recorded."""
        return self._all(f"SELECT EXISTS (SELECT 1 FROM {CALLS})")[0][0] == 1

    def count(self, filters: Filters) -> int:
        """How many calls match ``filters`` (from the roll-ups when they can answer)."""
        if _rollable(filters):
            rows = self.cube(replace(filters, ok=None))
            requests, errors = (rows[0]["requests"], rows[0]["errors"]) if rows else (0, 0)
            if filters.ok is None:
                return requests
            return requests - errors if filters.ok else errors
        cond, params = where(filters)
        return self._all(f"SELECT count(*) FROM {CALLS} WHERE {cond}", params)[0][0]

    def page(
        self, filters: Filters, *, sort: str = "time", descending: bool = True, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        """One page of calls in ``sort`` order (ties newest first).

        The page's ids are found first (an index-only scan for time order, so deep offsets stay cheap) and the
        rows fetched by id afterwards.
        """
        cond, params = where(filters)
        sql = f"SELECT id FROM {CALLS} WHERE {cond} ORDER BY {_order(sort, descending)} LIMIT ? OFFSET ?"
        ids = [r[0] for r in self._all(sql, [*params, limit, offset])]
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = self._all(f"SELECT {', '.join(API_COLUMNS)} FROM {CALLS} WHERE id IN ({marks})", ids)
        by_id = {r[0]: _row_dict(API_COLUMNS, r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def export(
        self, filters: Filters, *, sort: str = "time", descending: bool = True, cap: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        """Every matching call (at most ``cap``) in ``sort`` order, streamed from a connection of its own."""
        cond, params = where(filters)
        sql = f"SELECT {', '.join(API_COLUMNS)} FROM {CALLS} WHERE {cond} ORDER BY {_order(sort, descending)} LIMIT ?"
        conn = sqlite3.connect(self.db.path, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            cursor = conn.execute(sql, [*params, cap])
            while batch := cursor.fetchmany(1000):
                for row in batch:
                    yield _row_dict(API_COLUMNS, row)
        finally:
            conn.close()

    def attempts(self, call_id: str, started_at: float, *, window: float = HOUR) -> list[dict[str, Any]]:
        """Every attempt of logical call ``call_id`` recorded within ``window`` seconds of ``started_at``."""
        if not call_id:
            return []
        cols = ("id", "started_at", "attempt", "status_code", "ok", "error_type", "duration_ms", "provider", "model")
        rows = self._all(
            f"SELECT {', '.join(cols)} FROM {CALLS} WHERE started_at >= ? AND started_at <= ? AND call_id = ?"
            " ORDER BY attempt, started_at, id",
            [started_at - window, started_at + window, call_id],
        )
        return [_row_dict(cols, r) for r in rows]

    def latest_errors(self, filters: Filters, limit: int = 25) -> list[dict[str, Any]]:
        """The newest failed calls in the range."""
        cond, params = where(replace(filters, ok=False))
        cols = ("id", "started_at", "provider", "model", "status_code", "error_type", "error", "attempt", "route")
        rows = self._all(
            f"SELECT {', '.join(cols)} FROM {CALLS} WHERE {cond} ORDER BY started_at DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [_row_dict(cols, r) for r in rows]

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


@dataclass(frozen=True, slots=True)
class Report:
    """What :meth:`Analytics.report` found: totals, a time series and per-model/provider sums."""

    totals: dict[str, Any]
    series: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_provider: list[dict[str, Any]]


def _add_up(rows: Sequence[Sequence[Any]], key: Callable[[Any], Any], start: int = 3) -> dict[Any, list[Any]]:
    """Add up, per ``key(row)``, the :data:`_SUMS` of ``rows``: ``row[start:]``, or ``row[start]`` if a list."""
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
    return {k: _figures(zip(_SUMS, v, strict=True)) for k, v in sums.items()}


def _figures(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Named sums as the pages use them: counts and token sums as ints (``total()`` answers floats), a sum that
    overflowed to a non-finite float as ``None`` (unknown)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if value.__class__ is float:
            if value - value != 0.0:
                value = None
            elif name not in _FLOAT_SUMS:
                value = int(value)
        out[name] = value
    return out


RawPart = Callable[[Filters, str], tuple[str, list[Any]]]
"""Builds ``SELECT bucket, keys, sums`` over raw rows for one segment's filters and bucket expression."""


def _model_conditions(filters: Filters) -> list[tuple[str, Any]]:
    return [(f"{c} = ?", v) for c, v in (("provider", filters.provider), ("model", filters.model)) if v is not None]


def _raw_bucket(step: int) -> str:
    return f"CAST(started_at / {step} AS INTEGER) * {step}" if step else "0"


def _order(sort: str, descending: bool) -> str:
    column = SORTABLE.get(sort)
    if column is None:
        raise ValueError(f"cannot sort by {sort!r}")
    direction = "DESC" if descending else "ASC"
    if column == "started_at":
        return f"started_at {direction}, id {direction}"
    return f"{column} {direction} NULLS LAST, started_at DESC, id DESC"


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


def _finite_time(ts: Any) -> float:
    """A stored time stamp usable as a range bound (0 for none, or for a non-numeric or infinite one)."""
    return ts if isinstance(ts, int | float) and math.isfinite(ts) else 0


def _ratio(part: float | None, whole: float | None) -> float | None:
    """``part / whole``, ``None`` when either is unknown or ``whole`` is 0."""
    return part / whole if part is not None and whole else None


def _finish_dim(row: dict[str, Any]) -> dict[str, Any]:
    requests = row["requests"] or 0
    row["error_rate"] = (row["errors"] / requests) if requests else None
    return row


_SUMMARY_SUMS = tuple(name for name in _SUMS if not name.endswith(("_n", "_sum")))
"""The sums ``api/summary`` reports: :data:`_SUMS` without the helper counts behind means and cost coverage."""
_LATENCY_KEYS = ("latency_p50_ms", "latency_p95_ms", "ttft_p50_ms", "ttft_p95_ms")
_NO_HIST: dict[str, dict[int, int]] = {"d": {}, "t": {}}


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
