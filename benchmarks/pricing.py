#!/usr/bin/env python3
"""Pricing throughput: records/s of ``Pricer.price`` on a realistic mix, this version against an older one.

The mix (per 100 records): 40 OpenAI gpt-4o-mini with cache reads, 10 gpt-5 at the flex/default/priority tiers,
10 o3 with reasoning, 10 Claude Opus 4.1 with 5-minute and 1-hour cache writes, 10 Claude Sonnet 4.5 (tiered:
long-context prices, priced through genai-prices per call), 10 Gemini 2.5 Flash, 5 Gemini 2.5 Pro (tiered), 5 of an
unknown model; start times spread over the last 90 days (so several price periods are crossed where the data has
them). The baseline is ``llm_monitor_mw/pricing.py`` as it was at a git revision (``--baseline``, default
``HEAD``), loaded from ``git show`` next to the current module; both price the same records, after one warm-up
pass (the first pass resolves every model: its time is shown as "cold").

    python benchmarks/pricing.py                 # 200,000 records, best of 3
    python benchmarks/pricing.py --baseline v0.4 --records 50000
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

from llm_monitor_mw.pricing import Pricer
from llm_monitor_mw.record import CallRecord

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def mix(n: int, seed: int = 7) -> list[CallRecord]:
    """``n`` records of the mix described above."""
    rng = random.Random(seed)
    now = time.time()
    out: list[CallRecord] = []
    for i in range(n):
        k = i % 100
        at = now - rng.random() * 90 * DAY
        inp, outp = rng.randint(200, 6_000), rng.randint(20, 1_500)
        kw: dict[str, Any] = {"input_tokens": inp, "output_tokens": outp}
        if k < 40:
            provider, model = "openai", "gpt-4o-mini"
            kw["cached_tokens"] = inp // 3
        elif k < 50:
            provider, model = "openai", "gpt-5"
            kw["service_tier"] = ("flex", "default", "priority")[k % 3]
        elif k < 60:
            provider, model = "openai", "o3"
            kw["reasoning_tokens"] = outp // 2
        elif k < 70:
            provider, model = "anthropic", "claude-opus-4-1"
            kw.update(cached_tokens=inp // 4, cache_creation_tokens=inp // 4, cache_write_1h_tokens=inp // 8)
            kw["cache_write_5m_tokens"] = inp // 4 - inp // 8
        elif k < 80:
            provider, model = "anthropic", "claude-sonnet-4-5"
            kw["input_tokens"] = inp * (50 if k % 2 else 1)  # half over the 200k long-context threshold
        elif k < 90:
            provider, model = "gcp.gemini", "gemini-2.5-flash"
        elif k < 95:
            provider, model = "gcp.gemini", "gemini-2.5-pro"
        else:
            provider, model = "openai", "no-such-model-xyz"
        out.append(
            CallRecord(started_at=at, provider=provider, operation="chat", endpoint="/", response_model=model, **kw)
        )
    rng.shuffle(out)
    return out


def baseline_pricer(ref: str) -> Any:
    """``Pricer`` from ``llm_monitor_mw/pricing.py`` at git revision ``ref`` (imported under a private name)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:llm_monitor_mw/pricing.py"], capture_output=True, text=True, check=True
    ).stdout
    name = "llm_monitor_mw._pricing_baseline"
    module = types.ModuleType(name)
    module.__package__ = "llm_monitor_mw"
    sys.modules[name] = module
    exec(compile(source, f"{ref}:llm_monitor_mw/pricing.py", "exec"), module.__dict__)  # our own file, at a revision
    return module.Pricer


def run(pricer: Any, records: list[CallRecord]) -> float:
    price = pricer.price
    started = time.perf_counter()
    for record in records:
        price(record)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default="HEAD", help="git revision of the pricing module to compare with")
    args = parser.parse_args()
    records = mix(args.records)
    contenders: list[tuple[str, Any]] = []
    try:
        contenders.append((f"before ({args.baseline}: per model, 1 h cache)", baseline_pricer(args.baseline)()))
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"no baseline: {exc}", file=sys.stderr)
    contenders.append(("after (model, tier, price period)", Pricer()))
    print(f"{len(records):,} records, best of {args.repeat}; Python {sys.version.split()[0]}\n")
    print(f"| {'pricer':<44} | {'cold s':>7} | {'records/s':>10} | {'µs/record':>9} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 12}|{'-' * 11}|")
    for label, pricer in contenders:
        cold = run(pricer, records[:1000])
        best = min(run(pricer, records) for _ in range(args.repeat))
        rate = len(records) / best
        print(f"| {label:<44} | {cold:>7.3f} | {rate:>10,.0f} | {1e6 / rate:>9.2f} |")


if __name__ == "__main__":
    main()
