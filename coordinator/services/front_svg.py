"""The accuracy-latency front of `specialize` as a small SVG, written by hand.

`specialize --scenarios` draws one front per latency model; matplotlib took a third of
that command's time (its import alone ~0.45 s per process), for a line through a few
points. An SVG is a few lines of text, scales without blurring and opens in any browser.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from html import escape
from pathlib import Path

__all__ = ["accuracy_latency_front", "nice_ticks"]

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 60, 55  # margins around the plotting area
BLUE = "#1f77b4"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2 or 5 times a power of ten) covering
    [low, high] (finite); a range too narrow to divide is widened by 10% of its size."""
    if not high - low > 1e-9 * max(1.0, abs(low), abs(high)):
        spread = 0.1 * max(abs(low), abs(high)) or 1.0
        low, high = low - spread, high + spread
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)  # in steps
    first -= first * step > low  # a quotient rounded across an integer
    last += last * step < high
    return [k * step for k in range(first, last + 1)]


def _label(value: float, ticks: Sequence[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _element(name: str, close: bool = True, **attributes: object) -> str:
    """`<name a="v" .../>` (an underscore in an attribute's name is a hyphen); numbers to
    0.1 px."""
    shown = " ".join(
        f'{key.replace("_", "-")}="{f"{value:.1f}" if isinstance(value, float) else value}"'
        for key, value in attributes.items()
    )
    return f"<{name} {shown}{'/' if close else ''}>"


def _text(
    content: str, x: float, y: float, text_anchor: str = "middle", **attributes: object
) -> str:
    start = _element("text", close=False, x=x, y=y, text_anchor=text_anchor, **attributes)
    return f"{start}{_xml(content)}</text>"


def _xml(text: str) -> str:
    """`text` escaped, without the characters XML cannot hold (a LUT path may have them)."""
    return escape(_NOT_XML.sub("?", text))


def accuracy_latency_front(rows: list[dict], path: Path, source: str) -> Path:
    """Predicted top-1 (%) against predicted latency (ms) of the subnets found per budget,
    a line through them; the title (also the SVG's <title>) names `source`, the latency
    model they were found with."""
    pairs = [(float(r["latency_ms"]), 100 * float(r["accuracy"])) for r in rows]
    pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    if not pairs:
        raise ValueError("front: no point with a finite latency and accuracy to draw")
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return LEFT + (value - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - (value - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * plot_h

    title = _xml(f"accuracy-latency front: {source}")
    parts = [
        _element(
            "svg",
            xmlns="http://www.w3.org/2000/svg",
            width=WIDTH,
            height=HEIGHT,
            viewBox=f"0 0 {WIDTH} {HEIGHT}",
            font_family="sans-serif",
            font_size=12,
            close=False,
        ),
        f"<title>{title}</title>",
        _element("rect", width=WIDTH, height=HEIGHT, fill="white"),
        _text("specialised subnets per latency budget", WIDTH / 2, 22, font_size=14),
        _text(source, WIDTH / 2, 42),
    ]
    for tick in x_ticks:
        parts.append(
            _element("line", x1=x(tick), y1=TOP, x2=x(tick), y2=TOP + plot_h, stroke="#ddd")
        )
        parts.append(_text(_label(tick, x_ticks), x(tick), TOP + plot_h + 18))
    for tick in y_ticks:
        parts.append(
            _element("line", x1=LEFT, y1=y(tick), x2=LEFT + plot_w, y2=y(tick), stroke="#ddd")
        )
        parts.append(_text(_label(tick, y_ticks), LEFT - 8, y(tick) + 4, text_anchor="end"))
    points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pairs)
    middle = TOP + plot_h / 2
    parts += [
        _element("rect", x=LEFT, y=TOP, width=plot_w, height=plot_h, fill="none", stroke="#333"),
        _element("polyline", points=points, fill="none", stroke=BLUE, stroke_width=2),
        *(_element("circle", cx=x(a), cy=y(b), r=4, fill=BLUE) for a, b in pairs),
        _text("predicted latency (ms)", LEFT + plot_w / 2, HEIGHT - 12),
        _text("predicted top-1 (%)", 16, middle, transform=f"rotate(-90 16 {middle:.1f})"),
        "</svg>",
    ]
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
