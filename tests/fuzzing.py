"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py): hypothesis settings that keep CI
reproducible and bounded, odd JSON values, and mutations of a valid JSON document."""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# derandomize: the same examples on every run and machine (no example database either), so a
# failure in CI is a failure locally. 60 examples (a test may set its own count) keep the
# whole fuzz set well under a minute on 2 cores; deadline=None: a loaded machine is slow, not
# wrong.
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values that broke parsers somewhere: wrong types, non-finite floats, integers past int32,
# int64 and float range, strings with newlines, NUL and non-ASCII, nesting.
ODD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    3,
    224,
    2**31,
    2**40,
    2**63,
    -(2**63),
    10**400,
    0.5,
    -0.0,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "label\n",
    "a" * 10_000,
    "\x00",
    "é✓",
    "3",
    "224",
    "nan",
    "../x",
    [],
    [1] * 1000,
    {},
    {"": None},
    [[[[[]]]]],
    [math.nan],
]

# A copy each time: mutations change containers in place, and must never change ODD itself.
odd_values = st.sampled_from(ODD).map(copy.deepcopy)

json_values = st.recursive(
    st.one_of(
        odd_values,
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


def _mutate_here(draw, value: Any) -> Any:
    kinds = ["replace", "odd"]
    if isinstance(value, dict):
        kinds += ["drop", "add"] if value else ["add"]
    if isinstance(value, list):
        kinds += ["drop", "append", "repeat"] if value else ["append"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        kinds += ["scale"]
    kind = draw(st.sampled_from(kinds))
    if kind == "replace":
        return draw(json_values)
    if kind == "odd":
        return draw(odd_values)
    if kind == "drop":
        if isinstance(value, dict):
            del value[draw(st.sampled_from(sorted(value)))]
        else:
            del value[draw(st.integers(0, len(value) - 1))]
        return value
    if kind == "add":
        value[draw(st.text(max_size=12))] = draw(json_values)
        return value
    if kind == "append":
        value.append(draw(json_values))
        return value
    if kind == "repeat":  # a huge repeated field
        return value * draw(st.sampled_from([2, 100, 10_000]))
    factor = draw(st.sampled_from([-1, 2**40, math.inf, math.nan, 1e-300]))
    try:
        return value * factor
    except OverflowError:  # a 400-digit integer times a float
        return factor


def _mutate(draw, value: Any) -> Any:
    """One mutation at a random depth (each level descends with probability 3/4)."""
    containers = isinstance(value, (dict, list)) and value
    if containers and draw(st.integers(0, 3)) > 0:
        key = (
            draw(st.sampled_from(sorted(value)))
            if isinstance(value, dict)
            else draw(st.integers(0, len(value) - 1))
        )
        value[key] = _mutate(draw, value[key])
        return value
    return _mutate_here(draw, value)


@st.composite
def mutated(draw, base: Any, max_mutations: int = 3) -> Any:
    """A deep copy of the JSON document `base` with 1..max_mutations random mutations."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        value = _mutate(draw, value)
    return value


def assert_one_clean_line(exc: BaseException) -> None:
    """A refusal is one line, short enough to read, that never echoes a whole input."""
    message = str(exc)
    assert message and "\n" not in message, repr(message[:500])
    assert len(message) < 1000, f"{len(message)} characters: {message[:300]!r}..."
