"""Server-rendered charts: small pure functions from data points to escaped markup.

A time chart is HTML around two SVGs: the plot (a ``viewBox`` stretched to the card, strokes that do not scale),
value labels in HTML beside it and time labels in an SVG without a ``viewBox`` placed in percent below it, so
labels keep their CSS pixel size on any screen. Every bucket has a hover area with an SVG ``<title>`` (the
no-JavaScript tooltip); ``static/charts.js`` adds a crosshair and a tooltip listing every series from the
chart's ``data-chart`` JSON. Colours are CSS classes (``s1`` … ``s5``, ``ok``, ``err``, ``warn``) so charts follow
the light/dark theme.

The ``fmt_*`` names are the formatting functions of :mod:`.format`, kept here for older imports.
"""

from __future__ import annotations

import html
import inspect
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from . import format as fm

Formatter = Callable[..., str]
"""``fmt(value)``, or ``fmt(value, sig=n)`` when it takes ``sig`` (axes ask for the figures their ticks need)."""

fmt_int = fm.integer
fmt_compact = fm.compact
fmt_ms = fm.duration_ms
fmt_usd = fm.money
fmt_pct = fm.percent
fmt_time = fm.utc
fmt_span = fm.span

PLOT_W = 1000
PLOT_H = 180
"""The plot's ``viewBox``; CSS draws it PLOT_H pixels high, so a vertical unit is a pixel."""
INSET = 8
"""Room above the top tick so peaks and the top grid line are not cut (charts.css pads the value labels alike)."""
MAX_TIME_LABELS = 6
"""At most this many time labels: six short labels fit a 340 px phone chart without touching."""


def _svg(parts: Sequence[str]) -> Markup:
    """Join markup built in this module. Every stored or caller-given string in ``parts`` went through
    :func:`markupsafe.escape`, everything else is a number or a literal, so the result is safe to emit."""
    return Markup("".join(parts))  # noqa: S704 - see the docstring


# ---- value axis -------------------------------------------------------------------------------------------------


def nice_ticks(top: float, count: int = 4, *, integer: bool = False) -> list[float]:
    """``0`` and up to ``count`` round steps (1, 2, 2.5 or 5 times 10^k) up to at least ``top``.

    ``integer``: steps of at least 1 and never 2.5 (counts of requests have no quarters)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = max(top, 1e-12) / count  # a denormal top has no logarithm
    magnitude = 10 ** math.floor(math.log10(raw))
    multiples = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in multiples if m * magnitude >= raw * (1 - 1e-12))
    if integer:
        step = max(step, 1)
    n = math.ceil(top / step - 1e-9)
    return [_clean(i * step) for i in range(n + 1)]


def _clean(value: float) -> float:
    """``value`` without the float noise of ``i * step`` (``0.30000000000000004`` → ``0.3``)."""
    return float(f"{value:.12g}")


@lru_cache(maxsize=64)
def _takes_sig(fmt: Formatter) -> bool:
    try:
        return "sig" in inspect.signature(fmt).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def _figures(value: float) -> int:
    """Significant figures ``value`` needs to be written exactly (at most 6)."""
    for sig in range(1, 7):
        if value == 0 or abs(fm.round_sig(value, sig) - value) <= abs(value) * 1e-9:
            return sig
    return 6


def axis_labels(ticks: Sequence[float], fmt: Formatter) -> list[str]:
    """Labels for value ticks: as many significant figures as the ticks need (at least 2), and never two alike.

    A formatter without ``sig`` is used as is (its labels are still checked: more figures are not possible)."""
    if not _takes_sig(fmt):
        return [fmt(t) for t in ticks]
    sig = max(2, *(_figures(t) for t in ticks)) if ticks else 2
    labels = [fmt(t, sig=sig) for t in ticks]
    while len(set(labels)) < len(labels) and sig < 8:
        sig += 1
        labels = [fmt(t, sig=sig) for t in ticks]
    return labels


# ---- time axis --------------------------------------------------------------------------------------------------

MINUTE, HOUR, DAY = 60, 3600, 86400
TIME_STEPS = (
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
)
"""Round tick steps below a month; each divides a day or is whole days, so ticks fall on round UTC times."""
MONTH_STEPS = (1, 2, 3, 6, 12)
_MONDAY = 4 * DAY
"""1970-01-05, a Monday: week ticks count from it (the epoch was a Thursday)."""


@dataclass(frozen=True, slots=True)
class TimeTick:
    """A time label: where (Unix seconds), the label, and the date line under it ('' when the date is as before)."""

    ts: float
    label: str
    date: str = ""


def _month_starts(t0: float, t1: float, months: int) -> list[float]:
    start = datetime.fromtimestamp(t0, UTC)
    index = start.year * 12 + start.month - 1
    index += (-index) % months
    out = []
    while True:
        year, month = divmod(index, 12)
        ts = datetime(year, month + 1, 1, tzinfo=UTC).timestamp()
        if ts > t1:
            return out
        if ts >= t0:
            out.append(ts)
        index += months


def time_ticks(t0: float, t1: float, max_labels: int = MAX_TIME_LABELS) -> list[TimeTick]:
    """Round UTC times in ``[t0, t1]``: the smallest step of :data:`TIME_STEPS` (or whole months) that gives at
    most ``max_labels`` labels. Times of day read ``HH:MM`` with the date below at the first label and wherever the
    day changes; whole days read ``5 Mar`` with the year below at the first and wherever it changes."""
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        return []
    stamps: list[float] = []
    step = 0
    for step in TIME_STEPS:
        offset = _MONDAY if step % (7 * DAY) == 0 else 0
        first = math.ceil((t0 - offset) / step) * step + offset
        if math.floor((t1 - first) / step) + 1 <= max_labels:
            stamps = [float(t) for t in range(int(first), int(t1) + 1, step)]
            break
    else:
        for months in MONTH_STEPS:
            stamps = _month_starts(t0, t1, months)
            if len(stamps) <= max_labels:
                break
        step = 31 * DAY
    ticks = []
    previous = ""
    for ts in stamps:
        moment = datetime.fromtimestamp(ts, UTC)
        if step < DAY:
            label, context = moment.strftime("%H:%M"), f"{moment.day} {moment:%b}"
        elif step < 28 * DAY:
            label, context = f"{moment.day} {moment:%b}", f"{moment.year}"
        else:
            label, context = moment.strftime("%b"), f"{moment.year}"
        ticks.append(TimeTick(ts, label, context if context != previous else ""))
        previous = context
    return ticks


# ---- charts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One line or bar series: a name for the legend and tooltips, a value per bucket, a colour class."""

    name: str
    values: Sequence[float | None]
    css: str = "s1"


def time_chart(
    times: Sequence[float],
    series: Sequence[Series],
    *,
    step: int,
    label: str,
    fmt: Formatter = fm.compact,
    kind: str = "line",
    integer: bool = False,
    width: int = PLOT_W,
    height: int = PLOT_H,
) -> Markup:
    """A time-series chart: ``kind`` is ``line`` (a gap wherever a value is ``None``: no data is no line),
    ``bars`` or ``stacked`` (bars, series summed; a zero is a bar of height zero).

    ``times`` are bucket starts (Unix seconds, ``step`` apart); each series has one value per bucket.
    ``integer``: the value axis counts whole things. ``width``/``height`` are kept for older callers (the plot
    stretches to its card; its height is CSS's).
    """
    del width, height
    if kind not in ("line", "bars", "stacked"):
        raise ValueError(f"unknown chart kind {kind!r}")
    n = max(len(times), 1)
    slot = PLOT_W / n
    if kind == "stacked":
        peaks = [sum(s.values[i] or 0 for s in series) for i in range(len(times))]
    else:
        peaks = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    ticks = nice_ticks(max(peaks, default=0), integer=integer)
    top = ticks[-1]

    def y(value: float) -> float:
        return INSET + (PLOT_H - INSET) * (1 - value / top)

    start = times[0] if times else 0.0
    end = (times[-1] + step) if times else 1.0

    def xpct(ts: float) -> float:
        return (ts - start) / (end - start) * 100

    aria = escape(label)
    labels = axis_labels(ticks, fmt)
    out = ['<div class="tchart" data-chart="', _data(times, series, step, fmt), '">']
    out.append('<div class="tchart-y" aria-hidden="true">')
    out.extend(f"<span>{escape(text)}</span>" for text in reversed(labels))
    out.append("</div>")
    out.append(
        f'<div class="tchart-plot" tabindex="0" aria-label="{aria}: hover, or focus and use the arrow keys, to read'
        ' each time&#39;s values">'
        f'<svg class="chart" viewBox="0 0 {PLOT_W} {PLOT_H}" preserveAspectRatio="none" role="img"'
        f' aria-label="{aria}"><title>{aria}</title>'
    )
    for tick in ticks[1:]:
        ty = y(tick)
        out.append(f'<line class="grid" x1="0" x2="{PLOT_W}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
    for tick in time_ticks(start, end):
        tx = xpct(tick.ts) * PLOT_W / 100
        out.append(f'<line class="xgrid" x1="{tx:.1f}" x2="{tx:.1f}" y1="{INSET}" y2="{PLOT_H}"/>')
    if kind == "line":
        for s in series:
            out.extend(_line(s, slot, y))
    else:
        out.extend(_bars(series, slot, y, stacked=kind == "stacked"))
    for i, ts in enumerate(times):
        lines = [f"{fm.utc(ts, step)} UTC"] + [f"{s.name}: {_value(fmt, s.values[i])}" for s in series]
        out.append(
            f'<rect class="hit" x="{slot * i:.2f}" y="0" width="{slot:.2f}" height="{PLOT_H}">'
            f"<title>{escape(chr(10).join(lines))}</title></rect>"
        )
    out.append(f'<line class="axis" x1="0" x2="{PLOT_W}" y1="{PLOT_H}" y2="{PLOT_H}"/></svg>')
    if not peaks or max(peaks) == 0:
        out.append('<div class="tchart-nodata">No data in this range</div>')
    out.append('<div class="tchart-cross" hidden></div></div>')
    out.extend(_time_axis(start, end, xpct))
    out.append("</div>")
    return _svg(out)


def _value(fmt: Formatter, value: float | None) -> str:
    return fm.UNKNOWN if value is None else fmt(value)


def _data(times: Sequence[float], series: Sequence[Series], step: int, fmt: Formatter) -> str:
    """The tooltip's data as escaped JSON for the ``data-chart`` attribute: each bucket's time and values as text."""
    data = {
        "times": [f"{fm.utc(ts, step)} UTC" for ts in times],
        "series": [
            {"name": s.name, "css": s.css, "values": [_value(fmt, v) for v in s.values[: len(times)]]} for s in series
        ],
    }
    return str(escape(json.dumps(data, ensure_ascii=False, separators=(",", ":"))))


def _time_axis(start: float, end: float, xpct: Callable[[float], float]) -> list[str]:
    out = ['<svg class="tchart-x" aria-hidden="true">']
    for tick in time_ticks(start, end):
        pct = xpct(tick.ts)
        anchor = "start" if pct < 4 else ("end" if pct > 96 else "middle")
        out.append(f'<text x="{pct:.2f}%" y="12" text-anchor="{anchor}">{escape(tick.label)}</text>')
        if tick.date:
            out.append(f'<text class="date" x="{pct:.2f}%" y="26" text-anchor="{anchor}">{escape(tick.date)}</text>')
    out.append("</svg>")
    return out


def _line(s: Series, slot: float, y: Callable[[float], float]) -> list[str]:
    """A path through the bucket centres, broken at unknown values; an area under it; dots for lone points."""
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(s.values):
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((slot * (i + 0.5), y(value)))
    out: list[str] = []
    css = escape(s.css)
    for run in runs:
        if not run:
            continue
        if len(run) == 1:
            ((x, py),) = run
            # a zero-length stroke with round caps: a round dot whatever the plot's aspect ratio
            out.append(f'<path class="dot {css}" d="M{x:.1f},{py:.1f}h0"/>')
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{py:.1f}" for j, (x, py) in enumerate(run))
        area = f"{d} L{run[-1][0]:.1f},{PLOT_H} L{run[0][0]:.1f},{PLOT_H} Z"
        out.append(f'<path class="area {css}" d="{area}"/>')
        out.append(f'<path class="line {css}" d="{d}"/>')
    return out


def _bars(series: Sequence[Series], slot: float, y: Callable[[float], float], *, stacked: bool) -> list[str]:
    out: list[str] = []
    gap = slot * 0.15 if slot > 4 else 0.0
    width = slot - gap if stacked else (slot - gap) / max(len(series), 1)
    for i in range(len(series[0].values) if series else 0):
        floor = 0.0
        for k, s in enumerate(series):
            value = s.values[i] or 0
            if value <= 0 or not math.isfinite(value):
                continue
            x = slot * i + gap / 2 + (0 if stacked else k * width)
            lo, hi = (floor, floor + value) if stacked else (0.0, value)
            top_y, bottom_y = y(hi), y(lo)
            out.append(
                f'<rect class="bar {escape(s.css)}" x="{x:.2f}" y="{top_y:.1f}" width="{max(width, 0.5):.2f}"'
                f' height="{max(bottom_y - top_y, 0.5):.1f}"/>'
            )
            if stacked:
                floor = hi
    return out


def legend(series: Sequence[Series]) -> Markup:
    """The chart's legend as HTML: a colour swatch and the name of each series."""
    items = "".join(
        f'<span class="legend-item"><span class="swatch {escape(s.css)}"></span>{escape(s.name)}</span>' for s in series
    )
    return _svg([f'<div class="legend">{items}</div>'])


def share_bar(fraction: float | None, css: str = "s1") -> Markup:
    """A thin horizontal bar filled to ``fraction`` (0 to 1) of its width."""
    pct = 0.0 if fraction is None else max(0.0, min(1.0, fraction)) * 100
    return _svg(
        [
            f'<svg class="share" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="share-track" width="100" height="6" rx="1"/>'
            f'<rect class="share-fill {escape(css)}" width="{pct:.2f}" height="6" rx="1"/></svg>'
        ]
    )


def timeline(duration_ms: float | None, ttft_ms: float | None, ttlt_ms: float | None) -> Markup:
    """One call's timeline as a bar that stretches to any width: waiting for the first token, streaming, and the
    rest, with a tick at start, first token, last token and end (labels are the page's figures below it)."""
    marks = [("start", 0.0)]
    if ttft_ms is not None:
        marks.append(("first token", ttft_ms))
    if ttlt_ms is not None:
        marks.append(("last token", ttlt_ms))
    if duration_ms is not None:
        marks.append(("end", duration_ms))
    end = max((ms for _, ms in marks), default=0.0) or 1.0
    width = 1000.0

    def x(ms: float) -> float:
        return ms / end * width

    phases: list[tuple[str, float, float, str]] = []
    if ttft_ms is not None:
        phases.append(("waiting for the first token", 0.0, ttft_ms, "tl-wait"))
        if ttlt_ms is not None:
            phases.append(("streaming", ttft_ms, ttlt_ms, "tl-stream"))
            if duration_ms is not None and duration_ms > ttlt_ms:
                phases.append(("closing", ttlt_ms, duration_ms, "tl-close"))
        elif duration_ms is not None:
            phases.append(("receiving", ttft_ms, duration_ms, "tl-stream"))
    elif duration_ms is not None:
        phases.append(("request", 0.0, duration_ms, "tl-wait"))
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width:.0f} 24" preserveAspectRatio="none" role="img"'
        ' aria-label="Timeline of the call">',
        f'<rect class="tl-track" x="0" y="7" width="{width:.0f}" height="10"/>',
    ]
    for name, a, b, css in phases:
        parts.append(
            f'<rect class="{css}" x="{x(a):.1f}" y="7" width="{max(x(b) - x(a), 2):.1f}" height="10">'
            f"<title>{escape(name)}: {escape(fm.duration_ms(b - a))}</title></rect>"
        )
    for name, ms in marks:
        tx = min(max(x(ms), 1.0), width - 1)
        parts.append(
            f'<line class="tl-mark" x1="{tx:.1f}" x2="{tx:.1f}" y1="1" y2="23">'
            f"<title>{escape(name)}: {escape(fm.duration_ms(ms))}</title></line>"
        )
    parts.append("</svg>")
    return _svg(parts)


def chart_data(markup: Markup | str) -> dict[str, Any]:
    """The ``data-chart`` JSON of a :func:`time_chart` (for tests and tools)."""
    found = re.search(r'data-chart="([^"]*)"', str(markup))
    if found is None:
        raise ValueError("not a time chart")
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result
