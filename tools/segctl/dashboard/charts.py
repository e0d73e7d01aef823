"""Inline SVG charts, drawn on the server: a sparkline, a line chart over days, the overlap heatmap,
and confidence intervals on an axis. No script, no library: each is a few SVG elements; every text
that comes from data is escaped."""

from __future__ import annotations

from html import escape

PALETTE = ("#2563eb", "#16a34a", "#ea580c", "#9333ea", "#dc2626", "#0891b2")


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def sparkline(values: list[float | None], width: int = 120, height: int = 28, label: str = "trend") -> str:
    """A trend line of ``values`` (None points are skipped); a dash when there is nothing to draw."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) < 2:
        return '<span class="muted">–</span>'
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span = (hi - lo) or 1
    step = (width - 4) / (len(values) - 1)
    coords = " ".join(f"{_num(2 + i * step)},{_num(height - 3 - (v - lo) / span * (height - 6))}" for i, v in points)
    last_x, last_y = coords.rsplit(" ", 1)[-1].split(",")
    title = f"{label}: {_num(points[0][1])} → {_num(points[-1][1])} (min {_num(lo)}, max {_num(hi)})"
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{coords}"/>'
            f'<circle cx="{last_x}" cy="{last_y}" r="2" fill="{PALETTE[0]}"/></svg>')


def line_chart(days: list[str], series: list[tuple[str, list[float | None]]], title: str,
               width: int = 560, height: int = 220, percent: bool = False) -> str:
    """Lines over days, one per (name, values), from 0 to the largest value, with a legend."""
    left, right, top, bottom = 48, 12, 24, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    hi = max(values, default=0) or 1
    n = max(len(days), 1)
    step = plot_w / max(n - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - v / hi * plot_h

    fmt = (lambda v: f"{v * 100:.1f}%") if percent else _num
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="axis">{escape(fmt(hi))}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="axis">0</text>']
    if days:
        parts.append(f'<text x="{left}" y="{height - 14}" class="axis">{escape(days[0])}</text>')
        if n > 1:
            parts.append(f'<text x="{left + plot_w}" y="{height - 14}" text-anchor="end" class="axis">'
                         f'{escape(days[-1])}</text>')
    legend_x = left
    for k, (name, vs) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{_num(a)},{_num(b)}" for a, b in pts) + '"/>')
        for (a, b), (i, v) in zip(pts, [(i, v) for i, v in enumerate(vs) if v is not None], strict=True):
            parts.append(f'<circle cx="{_num(a)}" cy="{_num(b)}" r="2.5" fill="{color}">'
                         f'<title>{escape(name)} {escape(days[i] if i < len(days) else "")}: {escape(fmt(v))}'
                         f'</title></circle>')
        parts.append(f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="15" class="axis">{escape(name)}</text>')
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _heat_color(j: float) -> str:
    """White (no overlap) to deep blue (identical)."""
    j = min(max(j, 0.0), 1.0)
    r, g, b = (int(255 + (t - 255) * j) for t in (29, 78, 216))
    return f"rgb({r},{g},{b})"


def heatmap(segments: list[str], pairs: list[dict], names: dict[str, str] | None = None, cell: int = 30) -> str:
    """The overlap of every pair of segments as a grid, coloured by Jaccard index (1 on the diagonal)."""
    if not segments:
        return '<p class="muted">No segment has members yet.</p>'
    names = names or {}
    by_pair = {}
    for p in pairs:
        by_pair[(p["a"], p["b"])] = by_pair[(p["b"], p["a"])] = p
    label_w = 12 + 6 * max(len(s) for s in segments)
    size = len(segments) * cell
    width, height = label_w + size + 8, label_w + size + 8
    parts = [f'<svg class="heatmap" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Overlap of segments (Jaccard index)"><title>Overlap of segments (Jaccard index)</title>']
    for i, seg in enumerate(segments):
        label = escape(seg)
        cy = label_w + i * cell + cell / 2 + 4
        parts.append(f'<text x="{label_w - 6}" y="{_num(cy)}" text-anchor="end" class="axis">{label}</text>')
        cx = label_w + i * cell + cell / 2 + 4
        parts.append(f'<text x="{_num(cx)}" y="{label_w - 6}" transform="rotate(-90 {_num(cx)} {label_w - 6})" '
                     f'class="axis">{label}</text>')
    for i, a in enumerate(segments):
        for k, b in enumerate(segments):
            pair = by_pair.get((a, b))
            if a == b:
                j, tip = 1.0, f"{a}"
            elif pair:
                j = float(pair["jaccard"])
                tip = (f"{a} ({pair['a_size'] if pair['a'] == a else pair['b_size']}) and "
                       f"{b} ({pair['b_size'] if pair['b'] == b else pair['a_size']}): "
                       f"{pair['overlap']} in both, Jaccard {j:.2f}")
            else:
                j, tip = 0.0, f"{a} and {b}: no overlap"
            fx, fy = label_w + k * cell, label_w + i * cell
            text_color = "#fff" if j > 0.55 else "#333"
            parts.append(f'<g class="heat-cell" data-a="{escape(a)}" data-b="{escape(b)}">'
                         f'<rect x="{fx}" y="{fy}" width="{cell - 1}" height="{cell - 1}" fill="{_heat_color(j)}" '
                         f'stroke="#e5e7eb"><title>{escape(tip)}</title></rect>'
                         + (f'<text x="{fx + cell / 2 - 0.5}" y="{fy + cell / 2 + 3}" text-anchor="middle" '
                            f'class="cellnum" fill="{text_color}">{j:.2f}</text>' if a != b and j > 0 else "")
                         + "</g>")
    parts.append("</svg>")
    return "".join(parts)


def intervals(rows: list[tuple[str, float | None, list[float] | None]], lo: float, hi: float,
              title: str, percent: bool = True, zero: bool = False, width: int = 420) -> str:
    """Point estimates with their 95% intervals, one row each, on a shared axis from ``lo`` to ``hi``
    (with a line at 0 when ``zero``: an interval across it does not tell the two apart)."""
    left, right, row_h, top = 90, 16, 26, 8
    plot_w = width - left - right
    height = top + row_h * len(rows) + 22
    span = (hi - lo) or 1

    def x(v: float) -> float:
        return left + (min(max(v, lo), hi) - lo) / span * plot_w

    fmt = (lambda v: f"{v * 100:+.1f} pts" if zero else f"{v * 100:.1f}%") if percent else _num
    parts = [f'<svg class="interval" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    axis_y = top + row_h * len(rows) + 2
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#999"/>'
                 f'<text x="{left}" y="{axis_y + 14}" class="axis">{escape(fmt(lo))}</text>'
                 f'<text x="{left + plot_w}" y="{axis_y + 14}" text-anchor="end" class="axis">{escape(fmt(hi))}</text>')
    if zero and lo < 0 < hi:
        parts.append(f'<line class="zero" x1="{_num(x(0))}" y1="{top}" x2="{_num(x(0))}" y2="{axis_y}" '
                     f'stroke="#666" stroke-dasharray="3,3"/>')
    for i, (name, value, ci) in enumerate(rows):
        cy = top + i * row_h + row_h / 2
        parts.append(f'<text x="{left - 6}" y="{_num(cy + 4)}" text-anchor="end" class="axis">{escape(name)}</text>')
        if ci:
            tip = f"{name}: {fmt(value) if value is not None else 'n/a'}, 95% interval {fmt(ci[0])} to {fmt(ci[1])}"
            parts.append(f'<g class="ci"><title>{escape(tip)}</title>'
                         f'<line x1="{_num(x(ci[0]))}" y1="{_num(cy)}" x2="{_num(x(ci[1]))}" y2="{_num(cy)}" '
                         f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="3"/>'
                         f'<line x1="{_num(x(ci[0]))}" y1="{_num(cy - 5)}" x2="{_num(x(ci[0]))}" y2="{_num(cy + 5)}" '
                         f'stroke="{PALETTE[i % len(PALETTE)]}"/>'
                         f'<line x1="{_num(x(ci[1]))}" y1="{_num(cy - 5)}" x2="{_num(x(ci[1]))}" y2="{_num(cy + 5)}" '
                         f'stroke="{PALETTE[i % len(PALETTE)]}"/></g>')
        if value is not None:
            parts.append(f'<circle cx="{_num(x(value))}" cy="{_num(cy)}" r="4" fill="{PALETTE[i % len(PALETTE)]}">'
                         f'<title>{escape(name)}: {escape(fmt(value))}</title></circle>')
        else:
            parts.append(f'<text x="{left + 4}" y="{_num(cy + 4)}" class="axis muted">no data yet</text>')
    parts.append("</svg>")
    return "".join(parts)
