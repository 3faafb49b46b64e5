"""Charts drawn on the server as inline SVG: no chart library, no script, readable by screen readers."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from server.rollouts.states import DeviceState

# Wave and device states in the order a rollout moves through them, with their fill classes.
STATES = tuple(state.value for state in DeviceState)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line_chart(points: Sequence[tuple[float, float]], title: str, unit: str = "", width: int = 360,
               height: int = 150) -> Markup:
    """A line over `points` (x ascending), with its range labelled; an empty note when there are none."""
    label = f"{title}{' (' + unit + ')' if unit else ''}"
    if not points:
        return Markup('<p class="empty">{} : no data reported yet.</p>').format(label)
    pad_l, pad_r, pad_t, pad_b = 48, 8, 8, 20
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if y1 == y0:
        y1 = y0 + 1.0
    span_x = (x1 - x0) or 1.0
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b

    def at(x: float, y: float) -> str:
        return f"{pad_l + (x - x0) / span_x * inner_w:.1f},{pad_t + (1 - (y - y0) / (y1 - y0)) * inner_h:.1f}"

    line = " ".join(at(x, y) for x, y in points)
    summary = f"{label}: {len(points)} points, latest {_fmt(ys[-1])}, min {_fmt(min(ys))}, max {_fmt(max(ys))}"
    return Markup(
        '<figure class="chart"><figcaption>{label}</figcaption>'
        '<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{summary}">'
        '<line class="axis" x1="{pl}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        '<line class="axis" x1="{pl}" y1="{pt}" x2="{pl}" y2="{bottom}"/>'
        '<text class="tick" x="{tx}" y="{ty_top}" text-anchor="end">{ymax}</text>'
        '<text class="tick" x="{tx}" y="{bottom}" text-anchor="end">{ymin}</text>'
        '<text class="tick" x="{pl}" y="{h}">seq {xmin}</text>'
        '<text class="tick" x="{right}" y="{h}" text-anchor="end">seq {xmax}</text>'
        '<polyline class="series" points="{line}"/></svg></figure>'
    ).format(label=label, w=width, h=height - 2, summary=summary, pl=pad_l, pt=pad_t, bottom=height - pad_b,
             right=width - pad_r, tx=pad_l - 4, ty_top=pad_t + 8, ymax=_fmt(y1), ymin=_fmt(y0), xmin=int(x0),
             xmax=int(x1), line=line)


def bar_chart(bars: Sequence[tuple[str, int]], title: str, width: int = 360, height: int = 150) -> Markup:
    """Vertical bars with their counts above them (e.g. drift events per hour, devices per model version)."""
    if not bars:
        return Markup('<p class="empty">{}: nothing to show.</p>').format(title)
    top = max(count for _, count in bars) or 1
    slot = (width - 8) / len(bars)
    parts = []
    for i, (name, count) in enumerate(bars):
        h = (height - 44) * count / top
        x = 4 + i * slot
        parts.append(Markup('<g><title>{name}: {count}</title><rect class="bar" x="{x:.1f}" y="{y:.1f}" '
                            'width="{bw:.1f}" height="{h:.1f}"/><text class="tick" x="{cx:.1f}" y="{ly:.1f}" '
                            'text-anchor="middle">{count}</text></g>')
                     .format(name=name, count=count, x=x, y=height - 22 - h, bw=max(slot - 4, 1), h=h,
                             cx=x + slot / 2, ly=height - 26 - h))
    labels = [Markup('<text class="tick" x="4" y="{h}">{first}</text>').format(h=height - 6, first=bars[0][0])]
    if len(bars) > 1:
        labels.append(Markup('<text class="tick" x="{right}" y="{h}" text-anchor="end">{last}</text>')
                      .format(right=width - 4, h=height - 6, last=bars[-1][0]))
    summary = ", ".join(f"{name}: {count}" for name, count in bars)
    return Markup(
        '<figure class="chart"><figcaption>{title}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" '
        'height="{h}" role="img" aria-label="{summary}">{bars}{labels}</svg></figure>'
    ).format(title=title, w=width, h=height, summary=f"{title}: {summary}", bars=Markup("").join(parts),
             labels=Markup("").join(labels))


def state_bar(by_state: dict[str, int], total: int, width: int = 320, height: int = 18) -> Markup:
    """One stacked bar of devices by rollout state, with the counts spelled out for screen readers."""
    if total <= 0:
        return Markup('<span class="empty">no devices</span>')
    x, parts = 0.0, []
    for state in (*STATES, *sorted(set(by_state) - set(STATES))):
        count = by_state.get(state, 0)
        if not count:
            continue
        w = width * count / total
        parts.append(Markup('<rect class="st-{state}" x="{x:.1f}" y="0" width="{w:.1f}" height="{h}">'
                            '<title>{state}: {count}</title></rect>').format(state=state, x=x, w=w, h=height,
                                                                           count=count))
        x += w
    summary = ", ".join(f"{state} {count}" for state, count in by_state.items() if count)
    return Markup('<svg class="state-bar" viewBox="0 0 {w} {h}" width="{w}" height="{h}" preserveAspectRatio="none" '
                  'role="img" '
                  'aria-label="{summary}">{parts}</svg>').format(w=width, h=height, summary=summary or "none",
                                                                 parts=Markup("").join(parts))
