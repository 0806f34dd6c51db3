"""Server-side SVG charts: no JavaScript library, works offline, light on a phone.

A chart has one or two y axes (left: first series, right: second), each series drawn as
its mean line over a shaded min–max band, with gaps where data is missing, and optional
event markers (irrigation) along the bottom. Text is escaped; the SVG scales with its
container (``viewBox``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from core import clock
from iot.rollups import DAY, HOUR
from iot.series import Series

W, H = 440, 210
PAD_L, PAD_R, PAD_T, PAD_B = 38, 38, 12, 26
COLORS = ("#c0392b", "#1f77b4", "#2f7d32", "#8a5a2b", "#7b4fa0", "#b8860b")
METRIC_COLORS = {
    "air_temperature": "#c0392b",
    "air_humidity": "#1f77b4",
    "soil_moisture": "#8a5a2b",
    "soil_temperature": "#d35400",
    "co2": "#2f7d32",
    "light": "#b8860b",
    "ec": "#7b4fa0",
    "ph": "#138d90",
}


@dataclass
class ChartSeries:
    series: Series
    label: str
    unit: str
    color: str = ""


@dataclass
class Chart:
    start: int
    end: int
    lines: list[ChartSeries]
    markers: list[tuple[int, str]] = field(default_factory=list)  # (ts, title)
    title: str = ""
    no_data: str = "No data"


def _nice_range(lo: float, hi: float) -> tuple[float, float, float]:
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    raw = span / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}" if v == int(v) else f"{v:.1f}"


def _time_ticks(start: int, end: int) -> list[tuple[int, str]]:
    span = end - start
    if span <= 2 * DAY:
        step, fmt = (6 * HOUR if span > DAY // 2 else HOUR * 2), "%H:%M"
    elif span <= 10 * DAY:
        step, fmt = DAY, "%m-%d"
    elif span <= 62 * DAY:
        step, fmt = 7 * DAY, "%m-%d"
    else:
        step, fmt = 0, "%Y-%m"
    ticks = []
    if step:
        offset = int(clock.local(start).utcoffset().total_seconds())  # type: ignore[union-attr]
        t = (start + offset) // step * step - offset + step  # on local hours and midnights
        while t < end:
            ticks.append((t, clock.local(t).strftime(fmt)))
            t += step
    else:
        d = clock.local(start).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while True:
            d = d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1)
            t = int(d.timestamp())
            if t >= end:
                break
            if d.month % 2 == 1:
                ticks.append((t, d.strftime(fmt)))
    return ticks


def _step_of(s: Series) -> int:
    return {"hour": HOUR, "day": DAY}.get(s.resolution, 0)


MAX_DRAWN = 360  # about one point per horizontal pixel of the plot on a desktop


def _thin(points: Sequence[Any], bucket: int) -> list[tuple]:
    """(ts, mean, min, max, width) tuples, merging runs of consecutive points when there are
    more than the plot can show (mean weighted by readings, min of mins, max of maxes)."""
    k = max(1, math.ceil(len(points) / MAX_DRAWN))
    if k == 1:
        return [(p.ts, p.avg, p.min, p.max, bucket) for p in points]
    out = []
    for i in range(0, len(points), k):
        first = points[i]
        total = n = 0.0
        lo, hi = first.min, first.max
        for p in points[i : i + k]:
            total += p.avg * p.n
            n += p.n
            if p.min < lo:
                lo = p.min
            if p.max > hi:
                hi = p.max
        last_ts = points[min(i + k, len(points)) - 1].ts
        out.append((first.ts, total / n, lo, hi, last_ts + bucket - first.ts))
    return out


def render(chart: Chart) -> str:
    x0, x1, y0, y1 = PAD_L, W - PAD_R, PAD_T, H - PAD_B
    span = max(chart.end - chart.start, 1)

    def sx(ts: float) -> float:
        return x0 + (ts - chart.start) / span * (x1 - x0)

    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(chart.title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(chart.title)}</title>",
        f'<rect class="plot" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>',
    ]
    for t, label in _time_ticks(chart.start, chart.end):
        x = sx(t)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{H - 8}" text-anchor="middle">{escape(label)}</text>'
        )
    has_data = False
    for i, line in enumerate(chart.lines[:2]):
        color = line.color or COLORS[i]
        pts = _thin(line.series.points, _step_of(line.series))
        if not pts:
            continue
        has_data = True
        lo, hi, step = _nice_range(min(p[2] for p in pts), max(p[3] for p in pts))
        scale = (y1 - y0) / (hi - lo)

        def sy(v: float, lo=lo, scale=scale) -> float:
            return y1 - (v - lo) * scale

        # y axis ticks: left for the first series, right for the second
        v = lo
        while v <= hi + step / 2:
            y = sy(v)
            if i == 0:
                parts.append(f'<line class="grid" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}"/>')
                parts.append(
                    f'<text class="tick" x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" '
                    f'fill="{color}">{_fmt(v)}</text>'
                )
            else:
                parts.append(
                    f'<text class="tick" x="{x1 + 4}" y="{y + 4:.1f}" text-anchor="start" '
                    f'fill="{color}">{_fmt(v)}</text>'
                )
            v += step
        # split into runs at gaps (missing data is not interpolated): a gap is 2.5 times the
        # usual spacing of the points, and at least 15 minutes
        steps = sorted(b[0] - a[0] for a, b in zip(pts, pts[1:], strict=False))
        gap = max(2.5 * steps[len(steps) // 2] if steps else 0, 15 * 60)
        runs: list[list] = [[]]
        for p in pts:
            if runs[-1] and p[0] - runs[-1][-1][0] > gap:
                runs.append([])
            runs[-1].append(p)
        banded = line.series.resolution != "raw" or any(p[2] != p[3] for p in pts)
        for run in runs:
            # (x, y of mean, y of min, y of max), x at the middle of each point's time span
            xy = [(sx(t + width / 2), sy(avg), sy(mn), sy(mx)) for t, avg, mn, mx, width in run]
            if banded:
                upper = " ".join(f"{x:.1f},{ymax:.1f}" for x, _, _, ymax in xy)
                lower = " ".join(f"{x:.1f},{ymin:.1f}" for x, _, ymin, _ in reversed(xy))
                parts.append(f'<polygon class="band" fill="{color}" points="{upper} {lower}"/>')
            if len(xy) == 1:
                parts.append(f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="2" fill="{color}"/>')
            else:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in xy)
                parts.append(f'<polyline class="line" stroke="{color}" points="{path}"/>')
    for ts, title in chart.markers:
        if chart.start <= ts < chart.end:
            x = sx(ts)
            parts.append(
                f'<g class="marker"><title>{escape(title)}</title>'
                f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}"/>'
                f'<path d="M{x - 4:.1f},{y1} L{x + 4:.1f},{y1} L{x:.1f},{y1 - 7} Z"/></g>'
            )
    if not has_data:
        parts.append(
            f'<text class="nodata" x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle">'
            f"{escape(chart.no_data)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
