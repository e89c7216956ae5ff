"""Charts drawn by the server as SVG: no chart library, no script, nothing fetched.

Colours are CSS classes (`ok`, `failed`, `s0`..`s6`, `h0`..`h5`) so the light and dark themes
and the tables share one palette. Hover text is SVG `<title>`, which every browser shows natively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup, escape

from agentd.ui.format import duration, local, number

__all__ = ["stacked_days", "outcome_days", "week_heatmap", "waterfall", "usage_line"]

W, H = 720, 180
PAD_L, PAD_B, PAD_T = 60, 22, 8
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">{"".join(body)}</svg>'
    )


def _axis(top: float, fmt: Callable[[float], str], height: int = H) -> list[str]:
    """Three horizontal grid lines with their values."""
    out = []
    plot = height - PAD_B - PAD_T
    for frac in (0.0, 0.5, 1.0):
        y = PAD_T + plot * (1 - frac)
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{escape(fmt(top * frac))}</text>")  # fmt: skip
    return out


def _day_labels(days: Sequence[str], step: float) -> list[str]:
    out = []
    for i, day in enumerate(days):
        if i % 7 == len(days) % 7 - 1 or i == len(days) - 1:
            x = PAD_L + step * (i + 0.5)
            out.append(f'<text class="tick" x="{x:.1f}" y="{H - 6}" text-anchor="middle">'
                       f"{escape(day[5:])}</text>")  # fmt: skip
    return out


def stacked_days(days: Sequence[dict[str, Any]], key: str, groups: Sequence[str],
                 fmt: Callable[[float], str], label: str) -> Markup:  # fmt: skip
    """One bar per day, stacked by group (project, model or agent)."""
    totals = [sum(d[key].values()) for d in days]
    top = max(totals, default=0) or 1
    step = (W - PAD_L) / max(len(days), 1)
    plot = H - PAD_B - PAD_T
    body = _axis(top, fmt)
    for i, d in enumerate(days):
        y = PAD_T + plot
        for g_index, group in enumerate(groups):
            value = d[key].get(group, 0)
            if not value:
                continue
            h = plot * value / top
            y -= h
            body.append(
                f'<rect class="s{g_index % 7}" x="{PAD_L + step * i + 1:.1f}" y="{y:.1f}" '
                f'width="{max(step - 2, 1):.1f}" height="{max(h, 0.5):.1f}"><title>'
                f"{escape(d['day'])} · {escape(group)}: {escape(fmt(value))}</title></rect>"
            )
    body += _day_labels([d["day"] for d in days], step)
    return _svg(W, H, body, label)


def outcome_days(days: Sequence[dict[str, Any]], label: str) -> Markup:
    """Tool calls per day: succeeded below, failed on top, in the ok/failed colours."""
    top = max((d["tool_calls"] for d in days), default=0) or 1
    step = (W - PAD_L) / max(len(days), 1)
    plot = H - PAD_B - PAD_T
    body = _axis(top, lambda v: number(round(v)))
    for i, d in enumerate(days):
        ok, failed = d["tool_calls"] - d["failed"], d["failed"]
        x, width = PAD_L + step * i + 1, max(step - 2, 1)
        h_ok, h_failed = plot * ok / top, plot * failed / top
        rate = f"{failed / d['tool_calls']:.1%}" if d["tool_calls"] else "–"
        tip = f"{d['day']}: {number(d['tool_calls'])} calls, {number(failed)} failed ({rate})"
        y = PAD_T + plot - h_ok
        body.append(f'<g><title>{escape(tip)}</title>'
                    f'<rect class="ok" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h_ok:.1f}"/>'
                    f'<rect class="failed" x="{x:.1f}" y="{y - h_failed:.1f}" width="{width:.1f}" '
                    f'height="{h_failed:.1f}"/></g>')  # fmt: skip
    body += _day_labels([d["day"] for d in days], step)
    return _svg(W, H, body, label)


def week_heatmap(grid: Sequence[Sequence[int]], label: str) -> Markup:
    """Tool calls by weekday and hour (local time): darker is busier."""
    cell, left, top_pad = 26, 40, 16
    peak = max((v for row in grid for v in row), default=0) or 1
    body = []
    for hour in range(0, 24, 3):
        body.append(f'<text class="tick" x="{left + hour * cell + cell / 2}" y="11" '
                    f'text-anchor="middle">{hour:02d}h</text>')  # fmt: skip
    for day, row in enumerate(grid):
        y = top_pad + day * cell
        body.append(f'<text class="tick" x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">'
                    f"{DAYS[day]}</text>")  # fmt: skip
        for hour, value in enumerate(row):
            level = 0 if not value else 1 + min(4, int(5 * value / (peak + 1)))
            body.append(
                f'<rect class="h{level}" x="{left + hour * cell}" y="{y}" width="{cell - 2}" '
                f'height="{cell - 2}" rx="3"><title>{DAYS[day]} {hour:02d}:00: '
                f"{number(value)} tool calls</title></rect>"
            )
    return _svg(left + 24 * cell, top_pad + 7 * cell, body, label)


def waterfall(calls: Sequence[dict[str, Any]], label: str) -> Markup:
    """Each tool call as a bar from its start to its end, one lane per agent (subagents apart);
    overlapping calls in a lane (parallel tools) stack into rows. Failures are red and say why."""
    if not calls:
        return Markup('<p class="empty">No tool calls.</p>')
    t0 = min(c["start"] for c in calls)
    t1 = max(max(c["end"] for c in calls), t0 + 1)
    lanes: dict[str, list[int]] = {}  # lane -> its rows -> where the last bar in each ends
    placed = []
    for c in calls:
        rows = lanes.setdefault(c["lane"], [])
        free = next((i for i, end in enumerate(rows) if end <= c["start"]), len(rows))
        if free == len(rows):
            rows.append(c["end"])
        rows[free] = c["end"]
        placed.append((c, free))
    label_w, row_h, lane_gap, width = 150, 16, 10, 960
    offsets, y = {}, 24
    for lane, rows in lanes.items():
        offsets[lane] = y
        y += len(rows) * row_h + lane_gap
    height = y
    span = width - label_w - 8
    body = [f'<text class="tick" x="{label_w}" y="12">0 s</text>',
            f'<text class="tick" x="{width - 4}" y="12" text-anchor="end">'
            f"{escape(duration(t1 - t0))}</text>"]  # fmt: skip
    for lane, top in offsets.items():
        rows = len(lanes[lane])
        body.append(f'<rect class="lane" x="0" y="{top - 3}" width="{width}" '
                    f'height="{rows * row_h + 4}"/>'
                    f'<text class="lane-label" x="6" y="{top + 10}">{escape(lane[:22])}</text>')  # fmt: skip
    for c, index in placed:
        x = label_w + span * (c["start"] - t0) / (t1 - t0)
        w = max(span * (c["end"] - c["start"]) / (t1 - t0), 3)
        y0 = offsets[c["lane"]] + index * row_h
        took = duration(c["duration_ms"]) if c["duration_ms"] is not None else "duration unknown"
        tip = f"{c['tool_name']} · {took} · {c['outcome']}"
        if c["summary"]:
            tip += f"\n{c['summary']}"
        if c["error_message"]:
            tip += f"\n{c['error_message'][:600]}"
        body.append(
            f'<a href="#call-{escape(c["id"])}"><rect class="{c["outcome"]}" x="{x:.1f}" '
            f'y="{y0}" width="{w:.1f}" height="{row_h - 4}" rx="2"><title>{escape(tip)}</title>'
            "</rect></a>"
        )
    return _svg(width, height, body, label)


def usage_line(usage: Sequence[dict[str, Any]], start: int, label: str) -> Markup:
    """Cumulative tokens (line) over the session, the cost at each step in the hover text."""
    if not usage:
        return Markup('<p class="empty">No token usage recorded.</p>')
    t1 = max(max(u["at"] or start for u in usage), start + 1)
    top = max(u["tokens"] for u in usage) or 1
    plot = H - PAD_B - PAD_T
    body = _axis(top, lambda v: number(round(v)))
    points, dots = [], []
    for u in usage:
        x = PAD_L + (W - PAD_L - 8) * ((u["at"] or start) - start) / (t1 - start)
        y = PAD_T + plot * (1 - u["tokens"] / top)
        points.append(f"{x:.1f},{y:.1f}")
        moment = local(u["at"] or start)
        at = moment.strftime("%H:%M:%S") if moment else str(u["at"] or start)
        dots.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{at}: '
                    f"{number(u['tokens'])} tokens, ${u['cost']:.4f}</title></circle>")  # fmt: skip
    body.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    return _svg(W, H, body + dots, label)
