"""Every number and time the dashboard shows, formatted one way: pages, charts and alerts call these.

Two promises: unknown (``None``) is ``—``, never a zero; a nonzero amount never reads as zero (money keeps its
significant figures however small, percentages say ``<0.01 %``). ``sig`` (significant figures), where a function
takes it, is for chart axes, which ask for as many as their ticks need to read apart.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache

from ..store import cells

UNKNOWN = "—"


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def round_sig(value: float, sig: int) -> float:
    """``value`` rounded to ``sig`` significant figures (0 stays 0)."""
    if value == 0:
        return 0.0
    return round(value, sig - 1 - math.floor(math.log10(abs(value))))


def _trim(text: str, keep: int = 0) -> str:
    """``text`` (a positional decimal) without trailing zeros beyond ``keep`` decimals."""
    if "." not in text:
        return text
    whole, frac = text.split(".")
    frac = frac.rstrip("0")
    frac = frac + "0" * (keep - len(frac)) if len(frac) < keep else frac
    return f"{whole}.{frac}" if frac else whole


def plain(value: float) -> str:
    """``value`` with all its digits and never in scientific notation: ``3.6e-06`` → ``0.0000036`` (exports)."""
    return cells.plain(value)


def _sign(value: float) -> str:
    return "-" if value < 0 else ""


def money(value: float | None, sig: int | None = None) -> str:
    """US dollars by significant figures: ``$0.0000036``, ``$0.0042``, ``$0.42``, ``$1.23``, ``$123``, ``$12.3k``,
    ``$1.23M``; ``$0`` for zero, ``—`` for unknown, ``-$0.50`` below zero.

    Below a dollar, 2 significant figures (at least 2 decimals); from $1 to $100 cents; from $100 to $1,000
    whole dollars; above that 3 significant figures with k, M, B. ``sig`` asks for more figures (axes)."""
    if not _known(value):
        return UNKNOWN
    assert value is not None
    if value == 0:
        return "$0"
    sign, v = _sign(value), abs(value)
    if v < 1:
        figures = max(sig or 2, 2)
        r = round_sig(v, figures)
        if r < 1:
            decimals = max(2, figures - 1 - math.floor(math.log10(r)))
            return f"{sign}${_trim(f'{r:.{decimals}f}', 2)}"
        v = r
    if v < 1000:
        if sig is not None:
            r = round_sig(v, max(sig, 1))
            decimals = max(0, sig - 1 - math.floor(math.log10(r)))
            if r < 1000:
                return f"{sign}${_trim(f'{r:.{decimals}f}')}"
            v = r
        else:
            cents = round(v, 2)
            if cents < 100:
                return f"{sign}${cents:.2f}"
            dollars = round(v)
            if dollars < 1000:
                return f"{sign}${dollars}"
            v = dollars
    return f"{sign}${_scaled(v, sig or 3)}"


def _scaled(v: float, sig: int) -> str:
    """A positive ``v`` of 1,000 or more as ``12.3k``, ``1.23M``, ``4.5B``, ``1,234T``."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= size * 0.9995 or suffix == "k":
            scaled = round_sig(v / size, sig)
            if scaled >= 1000 and suffix != "T":
                continue
            if scaled >= 1000:
                return f"{scaled:,.0f}{suffix}"
            decimals = max(0, sig - 1 - math.floor(math.log10(scaled)))
            return f"{_trim(f'{scaled:.{decimals}f}')}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def integer(value: float | None) -> str:
    """``12,345`` (rounded to the nearest whole number; ``—`` when unknown)."""
    if not _known(value):
        return UNKNOWN
    assert value is not None
    return f"{round(value):,}"


def compact(value: float | None, sig: int | None = None) -> str:
    """``950``, ``0.25``, ``12.3k``, ``4.56M``, ``1.2B`` (3 significant figures, or ``sig``)."""
    if not _known(value):
        return UNKNOWN
    assert value is not None
    if value == 0:
        return "0"
    sign, v = _sign(value), abs(value)
    figures = sig or 3
    if v < 1000:
        if v == int(v) and sig is None:
            return f"{sign}{int(v)}"
        r = round_sig(v, figures)
        if r < 1000:
            decimals = max(0, figures - 1 - math.floor(math.log10(r)))
            return f"{sign}{_trim(f'{r:.{decimals}f}')}"
        v = r
    return f"{sign}{_scaled(v, figures)}"


def duration_ms(value: float | None, sig: int | None = None) -> str:
    """A duration given in milliseconds: ``0.42 ms``, ``3.5 ms``, ``84 ms``, ``840 ms``, ``1.24 s``, ``12.4 s``,
    ``2.5 min``, ``1.5 h``; ``0 ms`` for zero, ``—`` for unknown."""
    if not _known(value):
        return UNKNOWN
    assert value is not None
    if value == 0:
        return "0 ms"
    sign, v = _sign(value), abs(value)
    if sig is None:
        if v < 1:
            return f"{sign}{_trim(f'{round_sig(v, 2):.{max(2, 1 - math.floor(math.log10(v)))}f}')} ms"
        if v < 9.95:
            return f"{sign}{_trim(f'{v:.1f}')} ms"
        if v < 999.5:
            return f"{sign}{v:.0f} ms"
    elif v < 999.5:
        r = round_sig(v, sig)
        if r < 1000:
            decimals = max(0, sig - 1 - math.floor(math.log10(r)))
            return f"{sign}{_trim(f'{r:.{decimals}f}')} ms"
    figures = sig or 3
    for size, unit, limit in ((1000, "s", 60), (60_000, "min", 60), (3_600_000, "h", math.inf)):
        r = round_sig(v / size, figures)
        if r < limit:
            decimals = max(0, figures - 1 - math.floor(math.log10(r)))
            return f"{sign}{_trim(f'{r:.{decimals}f}')} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def percent(value: float | None, digits: int | None = None, sig: int | None = None) -> str:
    """A fraction as a percentage: ``0.07285`` → ``7.3 %``, ``0.5`` → ``50 %``, ``0.0042`` → ``0.42 %``; a tiny
    nonzero fraction is ``<0.01 %``, never ``0 %``; ``—`` when unknown.

    ``digits`` fixes the decimals (still never rounding a nonzero value to zero); ``sig`` asks for significant
    figures (axes)."""
    if not _known(value):
        return UNKNOWN
    assert value is not None
    pct = value * 100
    if pct == 0:
        return "0 %"
    sign, p = _sign(pct), abs(pct)
    if sig is not None:
        r = round_sig(p, sig)
        decimals = max(0, sig - 1 - math.floor(math.log10(r)))
        return f"{sign}{_trim(f'{r:.{decimals}f}')} %"
    if digits is not None:
        floor = 10.0**-digits
        if p < floor:
            return f"{'>-' if sign else '<'}{floor:.{digits}f} %"
        return f"{sign}{p:.{digits}f} %"
    if p < 0.01:
        return f"{'>-' if sign else '<'}0.01 %"
    if p < 1:
        return f"{sign}{_trim(f'{round_sig(p, 2):.{1 - math.floor(math.log10(round_sig(p, 2)))}f}')} %"
    return f"{sign}{_trim(f'{p:.1f}')} %"


@lru_cache(maxsize=8192)  # every chart labels the same bucket starts
def utc(ts: float | None, step: int = 1) -> str:
    """A Unix time in UTC at the precision ``step`` (seconds) calls for: ``2024-05-01``, ``2024-05-01 12:30``,
    ``2024-05-01 12:30:05``."""
    if not _known(ts):
        return UNKNOWN
    assert ts is not None
    moment = datetime.fromtimestamp(ts, UTC)
    if step >= 86400:
        return moment.strftime("%Y-%m-%d")
    if step >= 60:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def utc_ms(ts: float | None, date: bool = False) -> str:
    """A Unix time in UTC to the millisecond: ``12:30:05.042`` (with ``date``, ``2024-05-01 12:30:05.042``).

    Truncated, not rounded, so a time never reads as the next second."""
    if not _known(ts):
        return UNKNOWN
    assert ts is not None
    whole = math.floor(ts)
    millis = min(int((ts - whole) * 1000), 999)
    moment = datetime.fromtimestamp(whole, UTC)
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S' if date else '%H:%M:%S')}.{millis:03d}"


def span(seconds: float) -> str:
    """A duration in words: ``15 minutes``, ``24 hours``, ``7 days``."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size * (2 if unit == "day" else 1) or unit == "minute":
            value = seconds / size
            text = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
            return f"{text} {unit}{'' if text == '1' else 's'}"
    return ""  # pragma: no cover - the loop always returns
