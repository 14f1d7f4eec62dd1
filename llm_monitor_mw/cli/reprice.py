"""``llm-monitor reprice``: recompute stored costs with the current prices (and overrides), projections in step."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..pricing import Pricer
from ..store.dbfile import iso, open_store
from ..store.reprice import reprice as reprice_db
from .errors import UsageError
from .timespec import parse_moment

EPILOG = """\
Costs are recomputed with genai-prices (the installed version, or --update first) at each call's start time and
service tier, plus the overrides in --prices (the same JSON as Monitor(prices=...): USD per million tokens by
model or provider/model, e.g. {"my-model": {"input": 0.5, "output": 1.5, "cache_write_1h": 1.0}}). Calls the
prices do not know keep their stored cost. Each batch of calls is one short transaction that also updates the
dashboard's roll-ups, the trace totals and the /metrics counters by the difference, so every view (and every
budget) agrees with the new costs at once."""


def load_prices(path: str) -> dict[str, Any]:
    """The overrides in a JSON file, checked as ``Monitor(prices=...)`` checks them (a bad file is a usage error)."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--prices {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--prices {path}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise UsageError(f'--prices {path}: expected {{"model": {{"input": ..., "output": ...}}, ...}}')
    try:
        Pricer(spec)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--prices {path}: {exc}") from None
    return spec


def run(args: argparse.Namespace) -> int:
    """Re-price the calls since ``--since`` (all by default) and print what changed."""
    if args.batch_size < 1:
        raise UsageError("--batch-size must be positive")
    overrides = load_prices(args.prices) if args.prices else None
    pricer = Pricer(overrides)
    if args.update:
        _update_prices()
    since = args.since
    engine = open_store(args.db)
    try:
        started = time.monotonic()
        result = reprice_db(engine, pricer.price, since=since, batch=args.batch_size)
        what = "all calls" if since is None else f"calls since {iso(since)}"
        print(
            f"repriced {what}: {result.scanned:,} looked at, {result.changed:,} costs changed"
            f" ({result.delta_usd:+,.6f} USD), in {time.monotonic() - started:.1f} s ({result.batches:,} transactions)"
        )
        if result.unpriced:
            print(f"kept the stored cost of {result.unpriced:,} calls whose model has no price now")
        if result.failed:
            print(f"kept the stored cost of {result.failed:,} calls whose pricing failed (see the log)")
        return 0
    finally:
        engine.close()


def _update_prices() -> None:
    """Fetch genai-prices' latest price list once (a failure is reported; the bundled prices are used)."""
    import genai_prices

    updater = genai_prices.UpdatePrices()
    updater.start()
    try:
        updater.wait(timeout=30)
    except Exception as exc:
        print(f"could not fetch the latest prices ({type(exc).__name__}: {exc}); using the installed ones")
    finally:
        updater.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``reprice``'s options (DB is added by the caller, as for every command)."""
    parser.add_argument(
        "--since",
        type=parse_moment,
        metavar="TIME",
        help="only calls that started at or after TIME: an age (7d, 12h) or an ISO-8601 time",
    )
    parser.add_argument("--prices", metavar="FILE", help="JSON price overrides (as Monitor(prices=...))")
    parser.add_argument("--update", action="store_true", help="fetch genai-prices' latest price list first")
    parser.add_argument("--batch-size", type=int, default=500, help=argparse.SUPPRESS)
