"""A trace's calls as a waterfall: one row per stored attempt, its bar placed at its start offset from the trace's
start and as long as its duration, with the time to first token, the back-off before a retry and the tool calls
the model asked for marked on it.

Rows are HTML (the labels wrap and stack above their bar on a phone); each bar is a small SVG that stretches to
its column (``preserveAspectRatio="none"``, so it holds no text). The time axis is an HTML grid of equal columns,
one per tick step, so its labels line up with the bars' grid lines at any width and stay legible. No inline
styles (the CSP forbids them): geometry lives in SVG attributes, looks in ``static/traces.css``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from . import charts

WIDTH = 1000.0
"""Width of every bar's viewBox: offsets and durations are scaled to it."""
MAX_ROWS = 300
"""Most rows one waterfall draws (the calls table below it lists every call)."""
MIN_BAR = 3.0
"""Narrowest bar drawn, in viewBox units (a 0.2 ms call among seconds must still show)."""


@dataclass(frozen=True, slots=True)
class Waterfall:
    """The waterfall's markup and what the page says about it."""

    html: Markup
    scale_ms: float
    """The time the axis spans (a round number at or above the trace's end)."""
    rows: int
    """Rows drawn."""
    omitted: int
    """Calls left out beyond :data:`MAX_ROWS`."""


def ticks_for(end_ms: float) -> list[float]:
    """``0`` and 2 to 6 round steps (1, 2, 2.5 or 5 times 10^k ms) up to at least ``end_ms``, the axis that wastes
    the least width past ``end_ms`` (of those, the one nearest 4 steps)."""
    if not math.isfinite(end_ms) or end_ms <= 0:
        return [0.0, 1.0]
    magnitude = 10 ** math.floor(math.log10(end_ms / 6))
    best: tuple[float, int, float] | None = None  # (axis end, distance from 4 steps, step)
    for scale in (1, 10):
        for m in (1, 2, 2.5, 5):
            step = m * magnitude * scale
            steps = math.ceil(end_ms / step - 1e-9)
            if 2 <= steps <= 6 and (best is None or (steps * step, abs(steps - 4)) < best[:2]):
                best = (steps * step, abs(steps - 4), step)
    assert best is not None  # the step 10^k >= end/6 gives at most 6 steps; the smallest candidate at least 2
    top, _, step = best
    return [round(i * step, 9) for i in range(round(top / step) + 1)]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _end_ms(call: Mapping[str, Any]) -> float:
    offset = _num(call.get("offset_ms")) or 0.0
    return offset + max(_num(call.get("duration_ms")) or 0.0, 0.0)


def _label(call: Mapping[str, Any], href: str) -> str:
    model = call.get("model") or call.get("request_model") or "unknown model"
    parts = [f'<a class="wf-model" href="{escape(href)}">{escape(model)}</a>']
    if call.get("span_name"):
        parts.insert(0, f'<span class="wf-span">{escape(call["span_name"])}</span>')
    pills = []
    attempt = call.get("attempt")
    if isinstance(attempt, int) and attempt > 1:
        pills.append(f'<span class="pill wf-retry" title="SDK retry of the same call">try {attempt}</span>')
    if call.get("streamed"):
        pills.append('<span class="pill">stream</span>')
    if not call.get("ok", True):
        code = call.get("status_code")
        text = str(code) if code is not None else "no response"
        pills.append(f'<span class="badge {"warn" if code == 429 else "err"}">{escape(text)}</span>')
    count = call.get("tool_call_count")
    if isinstance(count, int) and count > 0:
        names = ", ".join(str(n) for n in (call.get("tool_names") or []))
        noun = "tool call" if count == 1 else "tool calls"
        title = f"The model asked for {count} {noun}" + (f": {names}" if names else "")
        text = names or f"{count} {noun}"
        pills.append(f'<span class="pill wf-tools" title="{escape(title)}">⚒ {escape(text)}</span>')
    provider = call.get("provider")
    meta = f'<span class="wf-provider">{escape(provider)}</span>' if provider else ""
    return (
        f'<div class="wf-label"><div class="wf-name">{"".join(parts)}</div>'
        f'<div class="wf-meta">{meta}{"".join(pills)}</div></div>'
    )


def _bar(call: Mapping[str, Any], x: Any, ticks: Sequence[float], backoff_from: float | None) -> str:
    offset = _num(call.get("offset_ms")) or 0.0
    duration = _num(call.get("duration_ms"))
    ttft = _num(call.get("ttft_ms"))
    ok = bool(call.get("ok", True))
    start = x(offset)
    length = max(x(offset + (duration or 0.0)) - start, MIN_BAR)
    start = min(start, WIDTH - length)
    label = f"starts at +{charts.fmt_ms(offset)}, takes {charts.fmt_ms(duration)}"
    out = [
        f'<svg class="wf-svg" viewBox="0 0 {WIDTH:.0f} 20" preserveAspectRatio="none" role="img"'
        f' aria-label="{escape(label)}">'
    ]
    out += [f'<line class="wf-grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="0" y2="20"/>' for t in ticks[1:-1]]
    if backoff_from is not None and backoff_from < offset:
        a, b = x(backoff_from), start
        out.append(
            f'<line class="wf-backoff" x1="{a:.1f}" x2="{b:.1f}" y1="10" y2="10">'
            f"<title>back-off before this retry: {escape(charts.fmt_ms(offset - backoff_from))}</title></line>"
        )
    tone = "wf-err" if not ok else ("wf-wait" if ttft is not None else "wf-call")
    title = f"{'failed' if not ok else 'call'}: +{charts.fmt_ms(offset)}, {charts.fmt_ms(duration)}"
    out.append(
        f'<rect class="{tone}" x="{start:.1f}" y="4" width="{length:.1f}" height="12" rx="1">'
        f"<title>{escape(title)}</title></rect>"
    )
    if ok and ttft is not None and duration is not None and ttft < duration:
        a = x(offset + ttft)
        out.append(
            f'<rect class="wf-stream" x="{a:.1f}" y="4" width="{max(start + length - a, 1.0):.1f}" height="12">'
            f"<title>streaming after the first token: {escape(charts.fmt_ms(duration - ttft))}</title></rect>"
        )
    if ttft is not None:
        a = min(x(offset + ttft), WIDTH - 1)
        out.append(
            f'<line class="wf-ttft" x1="{a:.1f}" x2="{a:.1f}" y1="1" y2="19">'
            f"<title>first token at +{escape(charts.fmt_ms(ttft))}</title></line>"
        )
    count = call.get("tool_call_count")
    if isinstance(count, int) and count > 0:
        end = min(start + length, WIDTH - 4)
        out.append(
            f'<rect class="wf-tool" x="{end - 4:.1f}" y="2" width="8" height="16" rx="2">'
            f"<title>asked for {count} tool call{'' if count == 1 else 's'}</title></rect>"
        )
    out.append("</svg>")
    return "".join(out)


def _axis(ticks: Sequence[float]) -> str:
    steps = len(ticks) - 1
    cells = [f'<span class="wf-tick">{escape(charts.fmt_ms(t))}</span>' for t in ticks[:-1]]
    cells[-1] = (
        f'<span class="wf-tick wf-last"><span>{escape(charts.fmt_ms(ticks[-2]))}</span>'
        f"<span>{escape(charts.fmt_ms(ticks[-1]))}</span></span>"
    )
    return (
        '<div class="wf-row wf-head" aria-hidden="true"><div class="wf-label"></div>'
        f'<div class="wf-axis wf-steps-{steps}">{"".join(cells)}</div><div class="wf-time"></div></div>'
    )


def waterfall(calls: Sequence[Mapping[str, Any]], hrefs: Sequence[str], *, trace_ms: float | None = None) -> Waterfall:
    """The waterfall of ``calls`` (rows with ``offset_ms``, ``duration_ms``, ``ttft_ms``, ``attempt``,
    ``call_id``, ``ok``, ``status_code``, ``model``, ``provider``, ``span_name``, ``tool_call_count``,
    ``tool_names``; ordered by start), each label linking to ``hrefs[i]``. ``trace_ms``: the trace's wall
    duration, so that the axis spans at least the whole trace."""
    shown = list(calls[:MAX_ROWS])
    end = max([trace_ms or 0.0, *(_end_ms(c) for c in shown)])
    ticks = ticks_for(end)
    scale = ticks[-1]

    def x(ms: float) -> float:
        return max(0.0, min(ms / scale * WIDTH, WIDTH))

    attempts_end: dict[Any, float] = {}
    rows = [_axis(ticks)]
    for call, href in zip(shown, hrefs, strict=False):
        call_id = call.get("call_id")
        backoff_from = attempts_end.get(call_id) if call_id is not None else None
        attempt = call.get("attempt")
        if not (isinstance(attempt, int) and attempt > 1):
            backoff_from = None
        if call_id is not None:
            attempts_end[call_id] = _end_ms(call)
        offset = _num(call.get("offset_ms")) or 0.0
        css = "wf-row" + ("" if call.get("ok", True) else " wf-row-err")
        rows.append(
            f'<div class="{css}">{_label(call, href)}'
            f'<div class="wf-track">{_bar(call, x, ticks, backoff_from)}</div>'
            f'<div class="wf-time"><span class="wf-offset">+{escape(charts.fmt_ms(offset))}</span>'
            f'<span class="wf-dur">{escape(charts.fmt_ms(_num(call.get("duration_ms"))))}</span></div></div>'
        )
    legend = (
        '<div class="legend wf-legend">'
        '<span class="legend-item"><span class="swatch wf-key-wait"></span>waiting for the first token</span>'
        '<span class="legend-item"><span class="swatch wf-key-stream"></span>streaming</span>'
        '<span class="legend-item"><span class="swatch wf-key-call"></span>call</span>'
        '<span class="legend-item"><span class="swatch wf-key-err"></span>failed</span>'
        '<span class="legend-item"><span class="swatch wf-key-backoff"></span>back-off before a retry</span>'
        '<span class="legend-item"><span class="swatch wf-key-tool"></span>asked for tools</span>'
        "</div>"
    )
    body = f'<div class="waterfall">{"".join(rows)}</div>'
    return Waterfall(
        html=Markup(legend + body),  # noqa: S704 - every stored string above went through escape()
        scale_ms=scale,
        rows=len(shown),
        omitted=max(len(calls) - len(shown), 0),
    )
