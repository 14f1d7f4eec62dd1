"""Server-rendered SVG charts and number formatting: small pure functions from data points to escaped markup.

No JavaScript: hover tooltips are SVG ``<title>`` elements, colours come from CSS classes (``s1`` … ``s5``,
``ok``, ``err``) so the charts follow the light/dark theme of ``static/style.css``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from markupsafe import Markup, escape

Formatter = Callable[[float], str]

# ---- number formatting ------------------------------------------------------------------------------------------


def fmt_int(value: float | None) -> str:
    """``12,345`` (``—`` when unknown)."""
    return "—" if value is None else f"{round(value):,}"


def fmt_compact(value: float | None) -> str:
    """``950``, ``12.3k``, ``4.56M``, ``1.2B``."""
    if value is None:
        return "—"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.3g}{suffix}" if abs(scaled) < 1000 else f"{scaled:,.0f}{suffix}"
    return f"{value:.3g}" if value != int(value) else f"{int(value)}"


def fmt_ms(value: float | None) -> str:
    """``840 ms``, ``1.24 s``, ``2.5 min``."""
    if value is None:
        return "—"
    if value == 0:
        return "0 ms"
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.3g} s"
    return f"{value / 60_000:.3g} min"


def fmt_usd(value: float | None) -> str:
    """``$0.0042``, ``$1.23``, ``$1,234``."""
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.4f}"
    if abs(value) < 100:
        return f"${value:,.2f}"
    return f"${value:,.0f}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.0312`` → ``3.1%``."""
    if value is None:
        return "—"
    pct = value * 100
    if 0 < pct < 0.1:
        return "<0.1%"
    return f"{pct:.{digits}f}%"


@lru_cache(maxsize=8192)  # every chart labels the same bucket starts
def fmt_time(ts: float | None, step: int = 1) -> str:
    """A Unix time in UTC at the precision ``step`` (seconds) calls for."""
    if ts is None:
        return "—"
    moment = datetime.fromtimestamp(ts, UTC)
    if step >= 86400:
        return moment.strftime("%Y-%m-%d")
    if step >= 60:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def fmt_span(seconds: float) -> str:
    """A duration in words: ``15 minutes``, ``24 hours``, ``7 days``."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size * (2 if unit == "day" else 1) or unit == "minute":
            value = seconds / size
            text = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
            return f"{text} {unit}{'' if text == '1' else 's'}"
    return ""  # pragma: no cover - the loop always returns


def _axis_time(ts: float, step: int, span: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    if step >= 86400:
        return moment.strftime("%d %b")
    if span > 86400:
        return moment.strftime("%d %b %H:%M")
    return moment.strftime("%H:%M")


def _svg(parts: Sequence[str]) -> Markup:
    """Join markup built in this module. Every stored or caller-given string in ``parts`` went through
    :func:`markupsafe.escape`, everything else is a number or a literal, so the result is safe to emit."""
    return Markup("".join(parts))  # noqa: S704 - see the docstring


# ---- axes -------------------------------------------------------------------------------------------------------


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """``0`` and up to ``count`` round steps (1, 2, 2.5 or 5 times 10^k) up to at least ``top``."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


@dataclass(frozen=True, slots=True)
class Series:
    """One line or bar series: a name for the legend and tooltips, a value per bucket, a colour class."""

    name: str
    values: Sequence[float | None]
    css: str = "s1"


@dataclass(frozen=True, slots=True)
class _Frame:
    width: int = 640
    height: int = 200
    left: int = 52
    right: int = 10
    top: int = 10
    bottom: int = 24

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


def time_chart(
    times: Sequence[float],
    series: Sequence[Series],
    *,
    step: int,
    label: str,
    fmt: Formatter = fmt_compact,
    kind: str = "line",
    width: int = 640,
    height: int = 200,
) -> Markup:
    """A time-series chart: ``kind`` is ``line`` (gaps at ``None``), ``bars`` or ``stacked`` (bars, series summed).

    ``times`` are bucket starts (Unix seconds, ``step`` apart); each series has one value per bucket. Every
    bucket has a hover area whose ``<title>`` lists the time and each series' value.
    """
    if kind not in ("line", "bars", "stacked"):
        raise ValueError(f"unknown chart kind {kind!r}")
    frame = _Frame(width=width, height=height)
    n = max(len(times), 1)
    slot = frame.plot_w / n
    if kind == "stacked":
        peaks = [sum(s.values[i] or 0 for s in series) for i in range(len(times))]
    else:
        peaks = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(peaks, default=0))
    top = ticks[-1]

    def y(value: float) -> float:
        return frame.top + frame.plot_h * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    for tick in ticks:
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="ylabel" x="{frame.left - 6}" y="{ty + 3.5:.1f}" text-anchor="end">{escape(fmt(tick))}</text>'
        )
    span = (times[-1] - times[0] + step) if times else 0
    every = max(1, math.ceil(n / 6))
    for i in range(0, len(times), every):
        x = frame.left + slot * (i + 0.5)
        parts.append(
            f'<text class="xlabel" x="{x:.1f}" y="{frame.height - 6}" text-anchor="middle">'
            f"{escape(_axis_time(times[i], step, span))}</text>"
        )
    if not peaks or max(peaks) == 0:
        parts.append(
            f'<text class="nodata" x="{frame.left + frame.plot_w / 2:.1f}" y="{frame.top + frame.plot_h / 2:.1f}"'
            ' text-anchor="middle">No data in this range</text>'
        )
    if kind == "line":
        for s in series:
            parts.extend(_line(s, frame, slot, y))
    else:
        parts.extend(_bars(series, frame, slot, y, stacked=kind == "stacked"))
    for i, ts in enumerate(times):
        lines = [fmt_time(ts, step)] + [
            f"{s.name}: {fmt(s.values[i]) if s.values[i] is not None else '—'}" for s in series
        ]
        parts.append(
            f'<rect class="hit" x="{frame.left + slot * i:.1f}" y="{frame.top}" width="{slot:.2f}"'
            f' height="{frame.plot_h}"><title>{escape(chr(10).join(lines))}</title></rect>'
        )
    parts.append(
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}"'
        f' y1="{frame.top + frame.plot_h}" y2="{frame.top + frame.plot_h}"/>'
    )
    parts.append("</svg>")
    return _svg(parts)


def _line(s: Series, frame: _Frame, slot: float, y: Callable[[float], float]) -> list[str]:
    """A path through the bucket centres, broken at unknown values; an area under it; dots for lone points."""
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(s.values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((frame.left + slot * (i + 0.5), y(value)))
    out: list[str] = []
    base = frame.top + frame.plot_h
    for run in runs:
        if not run:
            continue
        if len(run) == 1:
            ((x, py),) = run
            out.append(f'<circle class="dot {escape(s.css)}" cx="{x:.1f}" cy="{py:.1f}" r="2.5"/>')
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{py:.1f}" for j, (x, py) in enumerate(run))
        area = f"{d} L{run[-1][0]:.1f},{base:.1f} L{run[0][0]:.1f},{base:.1f} Z"
        out.append(f'<path class="area {escape(s.css)}" d="{area}"/>')
        out.append(f'<path class="line {escape(s.css)}" d="{d}"/>')
    return out


def _bars(
    series: Sequence[Series], frame: _Frame, slot: float, y: Callable[[float], float], *, stacked: bool
) -> list[str]:
    out: list[str] = []
    gap = min(2.0, slot * 0.2)
    width = slot - gap if stacked else (slot - gap) / max(len(series), 1)
    base = frame.top + frame.plot_h
    for i in range(len(series[0].values) if series else 0):
        floor = 0.0
        for k, s in enumerate(series):
            value = s.values[i] or 0
            if value <= 0:
                continue
            x = frame.left + slot * i + gap / 2 + (0 if stacked else k * width)
            lo, hi = (floor, floor + value) if stacked else (0.0, value)
            top_y, bottom_y = y(hi), (y(lo) if lo else base)
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
            f"<title>{escape(name)}: {escape(fmt_ms(b - a))}</title></rect>"
        )
    for name, ms in marks:
        tx = min(max(x(ms), 1.0), width - 1)
        parts.append(
            f'<line class="tl-mark" x1="{tx:.1f}" x2="{tx:.1f}" y1="1" y2="23">'
            f"<title>{escape(name)}: {escape(fmt_ms(ms))}</title></line>"
        )
    parts.append("</svg>")
    return _svg(parts)
