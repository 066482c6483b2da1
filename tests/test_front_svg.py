"""The hand-written SVG of `specialize`'s accuracy-latency front: round ticks that cover any
finite range, and a well-formed document whatever the rows and the source's name."""

from __future__ import annotations

import math
from itertools import pairwise
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.services.front_svg import accuracy_latency_front, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(finite, finite)
def test_ticks_are_few_round_increasing_and_cover_the_range(a, b):
    low, high = min(a, b), max(a, b)
    ticks = nice_ticks(low, high)
    assert 2 <= len(ticks) <= 12
    assert ticks[0] <= low and ticks[-1] >= high
    step = ticks[1] - ticks[0]
    assert step > 0
    assert all(math.isclose(t2 - t1, step, rel_tol=1e-6) for t1, t2 in pairwise(ticks))
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5, 10))


@pytest.mark.parametrize(
    "points",
    [
        [(12.0, 0.79)],  # one budget
        [(12.0, 0.79), (12.0, 0.79)],  # every budget picked one subnet
        [(18.0, 0.8), (math.nextafter(18.0, 19.0), 0.8000001)],  # a few ulps apart
        [(0.3, 0.5), (float("nan"), 0.6), (0.4, float("inf")), (0.5, 0.7)],  # non-finite left out
    ],
)
def test_a_degenerate_front_is_still_a_well_formed_picture(points, tmp_path):
    rows = [{"latency_ms": a, "accuracy": b} for a, b in points]
    source = "LUT /luts/ph\x01one <&> \u00e9"  # a control character XML cannot hold
    path = accuracy_latency_front(rows, tmp_path / "front.svg", source)
    svg = ElementTree.parse(path).getroot()
    finite_points = [p for p in points if all(map(math.isfinite, p))]
    assert len(svg.findall(f"{SVG}circle")) == len(finite_points)
    assert svg.find(f"{SVG}title").text == "accuracy-latency front: LUT /luts/ph?one <&> \u00e9"
    for circle in svg.findall(f"{SVG}circle"):
        assert 0 <= float(circle.get("cx")) <= 640 and 0 <= float(circle.get("cy")) <= 420


def test_a_front_without_a_finite_point_is_refused(tmp_path):
    with pytest.raises(ValueError, match="^front: no point with a finite latency"):
        accuracy_latency_front([{"latency_ms": float("nan"), "accuracy": 0.8}], tmp_path / "f", "")
    assert not (tmp_path / "f").exists()
