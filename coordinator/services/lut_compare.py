"""Latency lookup tables compared entry by entry: two devices, or two targets of one device
(fp32 against int8, batch 1 against 32).

Every other table is divided by the first (the base) over the (resolution, key) entries both
hold; the spread of those ratios says how the devices differ overall, and the ratios grouped
by stage, kernel size, expand ratio and resolution say where. One device that is uniformly
twice as fast gives ratio 0.5 everywhere; a group whose median ratio departs from the overall
median is where the latency model of one device transfers badly to the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ofa import space
from ofa.lut import LatencyTable
from ofa.plan import AVG_POOL, FEATURE_MIX, FINAL_EXPAND, FIRST_CONV, LOGITS, MBCONV

__all__ = [
    "Table",
    "KeyGroups",
    "read_tables",
    "read_table",
    "parse_key",
    "compare",
    "latency_groups",
    "DIMENSIONS",
]

DIMENSIONS = ("stage", "kernel", "expand", "resolution")
HEAD, TAIL = "head", "tail"

_KEY = re.compile(
    r"^(?P<kind>\w+)-input:(?P<input>[\dx]+)-output:(?P<output>[\dx]+)"
    r"(?:-expand:(?P<mid>\d+)-kernel:(?P<kernel>\d+)-.*)?$"
)
# The five elastic stages by their output channels, for every supernet width (disjoint sets).
_STAGE_OF_CHANNELS = {
    channels: stage
    for width in space.WIDTH_CHOICES
    for stage, channels in enumerate(space.stage_widths(width)[2:7], start=1)
}


@dataclass(frozen=True)
class Table:
    """A LUT as `{r: {key: mean ms}}`, named for the printout."""

    name: str
    means: dict[int, dict[str, float]]


def read_tables(paths: Sequence[str]) -> list[Table]:
    """The LUT folders to compare, the base first, each named by its folder (by the path as
    given where two folders share a name)."""
    if len(paths) < 2:
        raise ValueError(
            f"tables: expected at least 2 LUT folders (the base first), got {len(paths)}"
        )
    names = [Path(p).name or p for p in paths]
    if len(set(names)) < len(names):
        names = list(paths)
    return [read_table(path, name) for path, name in zip(paths, names, strict=True)]


def read_table(path: str | Path, name: str) -> Table:
    """The OFA-yaml LUT folder at `path` (as `lut export` writes it), every mean checked to
    be a positive number so that every ratio is defined."""
    try:
        entries = LatencyTable.from_ofa_yaml(path).entries
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not a readable LUT ({' '.join(str(exc).split())})") from None
    means: dict[int, dict[str, float]] = {}
    for r, table in entries.items():
        means[r] = {}
        for key, entry in table.items():
            mean = entry.get("mean") if isinstance(entry, dict) else None
            if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not mean > 0:
                raise ValueError(
                    f"{path}: r={r} {key}: expected a positive mean (ms), got {mean!r:.40}"
                )
            means[r][str(key)] = float(mean)
    return Table(name, means)


@dataclass(frozen=True)
class KeyGroups:
    """What a LUT key says about its layer: its stage (`head`, `stage 1`..`stage 5`, `tail`,
    or `other` for a key of another supernet), and for elastic blocks the kernel size and
    expand ratio (None for the fixed layers)."""

    stage: str
    kernel: int | None = None
    expand: float | None = None


def parse_key(key: str) -> KeyGroups:
    """Parse an OFA LUT key. The stage of an elastic block is read from its output channels,
    its expand ratio is middle channels over input channels; `blocks[0]` (an MBConv without
    expansion) belongs to the head."""
    match = _KEY.match(key)
    if not match:
        return KeyGroups("other")
    kind = match["kind"]
    if kind == FIRST_CONV:
        return KeyGroups(HEAD)
    if kind in (FINAL_EXPAND, AVG_POOL, FEATURE_MIX, LOGITS):
        return KeyGroups(TAIL)
    if kind != MBCONV or match["mid"] is None:
        return KeyGroups("other")
    in_channels = int(match["input"].split("x")[-1])
    out_channels = int(match["output"].split("x")[-1])
    mid = int(match["mid"])
    if mid == in_channels:
        return KeyGroups(HEAD)
    stage = _STAGE_OF_CHANNELS.get(out_channels)
    if stage is None:
        return KeyGroups("other")
    return KeyGroups(f"stage {stage}", int(match["kernel"]), mid / in_channels)


def _group_of(dimension: str, r: int, key: str) -> str | None:
    """The group label of entry (r, key) along `dimension`; None when it has none there."""
    if dimension == "resolution":
        return f"r={r}"
    parsed = parse_key(key)
    if dimension == "stage":
        return parsed.stage
    value = parsed.kernel if dimension == "kernel" else parsed.expand
    return None if value is None else f"{value:g}"


def _spread(ratios: Sequence[float]) -> dict[str, float]:
    values = np.asarray(ratios)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90)}


def _distance(ratio: float, median: float) -> float:
    """How far `ratio` is from `median`, symmetric for faster and slower (2x = 0.5x)."""
    return abs(math.log(ratio / median))


def _order(dimension: str) -> Callable[[str], tuple]:
    """Natural order of a dimension's group labels (stages head to tail, numbers ascending)."""
    if dimension == "stage":
        stages = [HEAD, *(f"stage {i}" for i in range(1, space.N_STAGES + 1)), TAIL, "other"]
        return lambda label: (stages.index(label),)
    return lambda label: (float(label.removeprefix("r=")),)


def _groups(values: dict[tuple[int, str], float]) -> list[dict[str, Any]]:
    """Each dimension's groups of the (r, key) values, in natural order, with their spread."""
    groups: list[dict[str, Any]] = []
    for dimension in DIMENSIONS:
        members: dict[str, list[float]] = {}
        for (r, key), value in values.items():
            label = _group_of(dimension, r, key)
            if label is not None:
                members.setdefault(label, []).append(value)
        groups += [
            {"by": dimension, "group": label, "entries": len(group), **_spread(group)}
            for label, group in sorted(members.items(), key=lambda kv: _order(dimension)(kv[0]))
        ]
    return groups


def latency_groups(table: Table) -> list[dict[str, Any]]:
    """Where one device's time goes across the space: its LUT entries' latency (ms) grouped
    by stage, kernel, expand ratio and resolution, each group's median and p10-p90."""
    return _groups(
        {(r, key): ms for r, entries in table.means.items() for key, ms in entries.items()}
    )


def compare(base: Table, other: Table, top: int = 10) -> dict:
    """`other` against `base`: every shared entry's ratio (other / base), their spread, the
    groups of each dimension (`vs_median` = group median / overall median) and per dimension
    the group farthest from the overall median, the `top` entries farthest from it, and what
    only one of the two holds."""
    pairs = {(r, key) for r, table in base.means.items() for key in table}
    theirs = {(r, key) for r, table in other.means.items() for key in table}
    shared = sorted(pairs & theirs)
    if not shared:
        raise ValueError(
            f"{other.name}: no LUT entry in common with {base.name} "
            f"(resolutions {sorted(other.means)} against {sorted(base.means)})"
        )
    ratios = {(r, key): other.means[r][key] / base.means[r][key] for r, key in shared}
    overall = _spread(list(ratios.values()))
    median = overall["median"]
    groups = _groups(ratios)
    for row in groups:
        row["vs_median"] = row["median"] / median
    most_different: dict[str, dict[str, Any]] = {}
    for row in groups:
        best = most_different.get(row["by"])
        if best is None or _distance(row["median"], median) > _distance(best["median"], median):
            most_different[row["by"]] = row
    entries: list[dict[str, Any]] = [
        {
            "r": r,
            "key": key,
            "base_ms": base.means[r][key],
            "ms": other.means[r][key],
            "ratio": ratio,
            "vs_median": ratio / median,
        }
        for (r, key), ratio in ratios.items()
    ]
    extremes = sorted(entries, key=lambda e: -_distance(e["ratio"], median))[:top]
    return {
        "table": other.name,
        "base": base.name,
        "shared": len(shared),
        "only_base": len(pairs - theirs),
        "only_table": len(theirs - pairs),
        **overall,
        "resolutions_only_base": sorted(set(base.means) - set(other.means)),
        "resolutions_only_table": sorted(set(other.means) - set(base.means)),
        "most_different": list(most_different.values()),
        "groups": groups,
        "extremes": extremes,
        "entries": entries,
        "not_shared": [{"r": r, "key": key, "in": base.name} for r, key in sorted(pairs - theirs)]
        + [{"r": r, "key": key, "in": other.name} for r, key in sorted(theirs - pairs)],
    }
