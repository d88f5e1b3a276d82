"""The overview's charts as server-rendered SVG (no build step, no JS framework): bars, stacked
bars and lines over time buckets, scaled into a viewBox so they shrink with the screen. Colours
come from CSS classes (the dashboard's Content-Security-Policy allows no inline styles); every
number is an SVG attribute, every label text, so nothing from the database is read as markup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22
PALETTE = 8  # series colours: .s0 ... .s7 in dashboard.css


@dataclass(frozen=True)
class Range:
    name: str  # "hour" | "day"
    span: timedelta
    bucket_s: int

    def buckets(self, now: datetime) -> list[datetime]:
        """The buckets' start times, oldest first, aligned on the range's start minute."""
        start = (now - self.span).astimezone(UTC).replace(second=0, microsecond=0)
        n = int(self.span.total_seconds() // self.bucket_s) + 1
        return [start + timedelta(seconds=i * self.bucket_s) for i in range(n)]

    def since(self, now: datetime) -> datetime:
        return self.buckets(now)[0]


RANGES = {
    "hour": Range("hour", timedelta(hours=1), 60),
    "day": Range("day", timedelta(days=1), 1800),
}


@dataclass
class Chart:
    """One chart: per series, a value per bucket (None: no data there)."""

    id: str
    title: str
    unit: str  # shown on the axis: "", "s", "%"
    buckets: list[datetime]
    series: dict[str, list[float | None]] = field(default_factory=dict)
    kind: str = "bars"  # bars | stacked | lines
    classes: dict[str, str] = field(default_factory=dict)  # series -> CSS class (default: s<n>)

    @property
    def has_data(self) -> bool:
        return any(v for values in self.series.values() for v in values if v)

    def total(self) -> float:
        return sum(v for values in self.series.values() for v in values if v)


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "s":
        return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _class(chart: Chart, name: str, index: int) -> str:
    return chart.classes.get(name, f"s{index % PALETTE}")


def render(chart: Chart) -> Markup:
    """The chart as an inline <svg> (with a legend below), or a 'no data' note."""
    n = len(chart.buckets)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    names = list(chart.series)
    if chart.kind == "stacked":
        tops = [sum(chart.series[s][i] or 0 for s in names) for i in range(n)]
    else:
        tops = [max((chart.series[s][i] or 0) for s in names) if names else 0 for i in range(n)]
    peak = max(tops, default=0) or 1.0
    if chart.unit == "%":
        peak = max(peak, 1.0)
    step = inner_w / max(n, 1)

    def y(v: float) -> float:
        return TOP + inner_h - (v / peak) * inner_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart.id}-t" '
        f'data-series="{len(names)}" data-total="{chart.total():g}" preserveAspectRatio="none">',
        f'<title id="{chart.id}-t">{escape(chart.title)}</title>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + inner_h}" x2="{WIDTH - RIGHT}" y2="{TOP + inner_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{escape(_fmt(peak, chart.unit))}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + inner_h}" text-anchor="end">0</text>',
    ]
    for i in (0, n // 2, n - 1) if n > 2 else range(n):
        label = chart.buckets[i].strftime("%H:%M")
        anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
        parts.append(
            f'<text class="tick" x="{LEFT + i * step + step / 2:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">{label}</text>'
        )
    if chart.kind in ("bars", "stacked"):
        width = max(step * 0.8, 0.5)
        base = [0.0] * n
        for k, name in enumerate(names):
            css = _class(chart, name, k)
            for i, v in enumerate(chart.series[name]):
                if not v:
                    continue
                low = base[i] if chart.kind == "stacked" else 0.0
                top = low + v
                x = LEFT + i * step + (step - width) / 2
                parts.append(
                    f'<rect class="{css}" x="{x:.1f}" y="{y(top):.1f}" width="{width:.1f}" '
                    f'height="{max(y(low) - y(top), 0.5):.1f}"><title>{escape(name)} '
                    f"{chart.buckets[i].strftime('%H:%M')}: {escape(_fmt(v, chart.unit))}</title></rect>"
                )
                if chart.kind == "stacked":
                    base[i] = top
    else:
        for k, name in enumerate(names):
            css = _class(chart, name, k)
            points = [
                (LEFT + i * step + step / 2, y(v)) for i, v in enumerate(chart.series[name]) if v is not None
            ]
            if len(points) == 1:
                px, py = points[0]
                parts.append(f'<circle class="{css}" cx="{px:.1f}" cy="{py:.1f}" r="2.5"/>')
            elif points:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                parts.append(f'<polyline class="line {css}" points="{path}"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch {_class(chart, name, k)}"></span>{escape(name)}</li>'
        for k, name in enumerate(names)
    )
    return Markup("".join(parts) + (f'<ul class="legend">{legend}</ul>' if len(names) > 1 else ""))


def bucketed(
    buckets: Sequence[datetime], rows: Mapping[tuple[datetime, str], float], keys: Sequence[str]
) -> dict[str, list[float | None]]:
    """Per key, the value of each bucket (0 when the bucket has no row)."""
    return {k: [rows.get((b, k), 0.0) for b in buckets] for k in keys}
