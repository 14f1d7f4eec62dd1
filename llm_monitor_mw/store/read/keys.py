"""Usage per API key: spend, calls and tokens per ``key_fingerprint`` in a range, the biggest first.

The writer rolls calls up per key as the ``key`` dimension of ``rollup_dims_*`` (see ``store/projections.py``), so
a long range is answered from whole hours and days plus raw rows at its edges, as the other breakdowns are; with
filters the roll-ups do not keep (a route, a user, a key…) the range is read from raw rows. Each key's hint is
its latest call's (one probe of ``idx_calls_key`` per key listed).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ..schema import CALLS
from .aggregates import DIM_SUMS, dim_sources, dim_sum_exprs, figures
from .base import snapshotted
from .filters import Filters
from .metrics import MAX_TIME, MIN_TIME, Metrics

KEY_ORDERS = {"cost": "cost_usd", "requests": "requests", "tokens": "total_tokens"}
"""How :meth:`Keys.by_key` may rank keys (``order=``), and the sum each ranks by."""
MAX_KEYS = 1000
"""Most keys one answer lists."""


class Keys(Metrics):
    """Reads of usage per API key (by fingerprint and hint; the store never holds a key)."""

    @snapshotted
    def by_key(self, filters: Filters, *, order: str = "cost", limit: int = 10) -> list[dict[str, Any]]:
        """The top ``limit`` keys of the calls matching ``filters`` (``since``/``until`` set) by ``order``
        (``cost``, ``requests`` or ``tokens``; ties by fingerprint).

        Each row: ``key_fingerprint``, ``key_hint``, ``requests``, ``errors``, ``input_tokens``, ``output_tokens``,
        ``total_tokens``, ``cost_usd`` (``None`` when none of the key's calls was priced), ``cost_n`` (the priced
        calls), ``error_rate``, and ``share``: the key's part of what ``order`` ranks by, over every key's calls.
        Without ``since``/``until`` the range is everything recorded.
        """
        if order not in KEY_ORDERS or not 1 <= limit <= MAX_KEYS:
            raise ValueError(f"order must be one of {', '.join(KEY_ORDERS)} and limit 1 to {MAX_KEYS}")
        if filters.since is None or filters.until is None:
            since = MIN_TIME if filters.since is None else filters.since
            until = math.floor(MAX_TIME) if filters.until is None else filters.until
            filters = replace(filters, since=since, until=until)
        d = self.dialect
        value, source, cond0 = dim_sources(d)["key"]
        cols = ", ".join(f"{e} AS {n}" for n, e in zip(DIM_SUMS, dim_sum_exprs(d), strict=True))

        def raw(f: Filters, bucket: str) -> tuple[str, list[Any]]:
            cond, params = f.conditions(dialect=d)
            sql = f"SELECT {bucket} AS bucket, 'key' AS dim, {value} AS value, {cols}"
            return f"{sql} {source} WHERE {cond} AND {cond0} GROUP BY 1, 3", params

        # the dims roll-up has no provider/model: with those filters the whole range comes from raw rows
        rollable = filters.provider is None and filters.model is None
        sub, params = self._union(
            filters,
            0,
            "dims",
            "dim, value",
            DIM_SUMS,
            raw,
            rollable=rollable,
            rollup_where=[("dim = ?", "key")],
        )
        sums = ", ".join(f"{d.total(n)} AS {n}" for n in DIM_SUMS)
        rows = [
            figures(zip(("key_fingerprint", *DIM_SUMS), r, strict=True))
            for r in self._all(f"SELECT value, {sums} FROM ({sub}) AS u GROUP BY value", params)
        ]
        rows = [r for r in rows if r["requests"]]
        column = KEY_ORDERS[order]
        whole = sum(r[column] or 0 for r in rows)
        rows.sort(key=lambda r: (-(r[column] or 0), r["key_fingerprint"]))
        top = rows[:limit]
        for row in top:
            requests = row["requests"]
            row["error_rate"] = row["errors"] / requests if requests else None
            if not row["cost_n"]:
                row["cost_usd"] = None  # no priced call: unknown, not $0
            part = row[column]
            row["share"] = part / whole if part is not None and whole else None
            row["key_hint"] = self._hint(row["key_fingerprint"])
        return top

    def _hint(self, fingerprint: str) -> str | None:
        """The hint of the latest call made with the key of ``fingerprint``."""
        rows = self._all(
            f"SELECT key_hint FROM {CALLS} WHERE key_fingerprint = ? ORDER BY started_at DESC LIMIT 1", [fingerprint]
        )
        return rows[0][0] if rows else None
