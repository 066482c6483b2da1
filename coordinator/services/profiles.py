"""A subnet's per-node profile (`ofa-agent bench --profile --format json`, or the results of
a campaign created with --profile, as `results export --format jsonl` writes them) mapped back to
OFA's layers: each node's scope names the module of the exported network it came from
(`first_conv`, `blocks.N`, `final_expand_layer`, `global_avg_pool`, `feature_mix_layer`,
`classifier`), which is one entry of `ofa.plan.layer_plan` and so one LUT key. Beside each
layer's profiled time goes its LUT figure, when a LUT is given: where the two part is where
measuring a block alone misleads about the block inside the network."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from agent.profile import NodeTime
from ofa.config import SubnetConfig
from ofa.lut import LatencyTable
from ofa.plan import LayerSpec, layer_plan

__all__ = ["layer_scopes", "profile_by_layer", "read_profile", "profile_from_results", "OTHER"]

OTHER = "(other)"  # nodes of no module: what onnxruntime adds itself (layout reorders)
_TAIL = ("final_expand_layer", "global_avg_pool", "feature_mix_layer", "classifier")


def layer_scopes(config: SubnetConfig) -> dict[str, LayerSpec]:
    """{module scope in the exported subnet: its layer}, in execution order."""
    plan = layer_plan(config)
    scopes = {"first_conv": plan[0]}
    scopes.update({f"blocks.{i}": spec for i, spec in enumerate(plan[1 : -len(_TAIL)])})
    scopes.update(zip(_TAIL, plan[-len(_TAIL) :], strict=True))
    return scopes


def read_profile(record: object) -> list[NodeTime]:
    """The `nodes` of a profile record, each checked: node, op_type and scope strings,
    mean_us a finite number >= 0."""
    if not isinstance(record, dict) or not isinstance(record.get("nodes"), list):
        raise ValueError("profile: expected the JSON of `ofa-agent bench --profile`, with nodes")
    nodes = record["nodes"]
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise ValueError(f"profile: nodes[{i}]: expected an object")
        for key in ("node", "op_type", "scope"):
            if not isinstance(node.get(key), str):
                raise ValueError(f"profile: nodes[{i}].{key}: expected a string")
        mean = node.get("mean_us")
        if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not 0 <= mean < math.inf:
            raise ValueError(f"profile: nodes[{i}].mean_us: expected a finite number >= 0")
    if not nodes:
        raise ValueError("profile: no nodes (was the model measured with --profile?)")
    return [NodeTime(n["node"], n["op_type"], n["scope"], float(n["mean_us"])) for n in nodes]


def profile_from_results(
    records: Iterable[tuple[str, object]], subnet: str | None = None, target: str | None = None
) -> tuple[SubnetConfig, list[NodeTime]]:
    """One subnet's profile from a campaign's results (`results export --format jsonl`
    records, each with where it was read, e.g. `file:line`): each node's time averaged over
    the subnet's accepted results on one target that carry nodes (a profile that failed
    says why instead). `subnet` (an id) and `target` (e.g. label:pixel7) pick them where the
    results hold several."""
    groups: dict[tuple[str, str], tuple[SubnetConfig, list[list[NodeTime]]]] = {}
    for where, record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object of `results export`")
        profile = record.get("profile")
        if record.get("kind") != "subnet" or not record.get("accepted"):
            continue
        if not isinstance(profile, dict) or not profile.get("nodes"):
            continue
        try:
            config = SubnetConfig.from_json(str(record.get("key")))
        except ValueError as exc:
            raise ValueError(f"{where}: key: {exc}") from None
        if (subnet and config.id != subnet) or (target and record.get("target") != target):
            continue
        try:
            nodes = read_profile(profile)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        group = groups.setdefault((str(record.get("target")), config.id), (config, []))
        group[1].append(nodes)
    wanted = " and ".join(
        f"{name} {value}" for name, value in (("subnet", subnet), ("target", target)) if value
    )
    if not groups:
        raise ValueError(
            f"results: no accepted subnet result with a profile{' for ' + wanted if wanted else ''}"
            " (was the campaign created with --profile?)"
        )
    for index, option in ((1, "--subnet"), (0, "--target")):
        found = sorted({key[index] for key in groups})
        if len(found) > 1:
            listed = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            name = option.lstrip("-")
            raise ValueError(
                f"{name}: the results hold profiles of {len(found)} {name}s ({listed}); "
                f"pick one with {option}"
            )
    ((config, profiles),) = groups.values()
    return config, _mean_profile(profiles)


def _mean_profile(profiles: list[list[NodeTime]]) -> list[NodeTime]:
    """Each node's mean time over the profiles that ran it, in the order it first ran."""
    times: dict[str, list[float]] = {}
    first: dict[str, NodeTime] = {}
    for nodes in profiles:
        for node in nodes:
            first.setdefault(node.node, node)
            times.setdefault(node.node, []).append(node.mean_us)
    return [
        NodeTime(n.node, n.op_type, n.scope, sum(times[name]) / len(times[name]))
        for name, n in first.items()
    ]


def profile_by_layer(
    nodes: Sequence[NodeTime], config: SubnetConfig, lut: LatencyTable | None = None
) -> list[dict]:
    """A row per layer of `config` (and one for nodes outside them): its LUT key, profiled
    ms per run, share of the profiled total, and the LUT's ms (None without a LUT or entry).
    A node whose scope is not a layer of `config` means the profile is of another subnet."""
    scopes = layer_scopes(config)
    unknown = sorted({n.scope for n in nodes if n.scope and n.scope not in scopes})
    if unknown:
        raise ValueError(
            f"profile: nodes of {', '.join(unknown[:3])} are not layers of subnet {config.id} "
            f"({len(scopes)} layers): is the profile of another subnet?"
        )
    profiled = dict.fromkeys([*scopes, OTHER], 0.0)
    for node in nodes:
        profiled[node.scope or OTHER] += node.mean_us / 1000
    total = sum(profiled.values()) or 1.0
    table = lut.entries.get(config.r, {}) if lut is not None else {}
    rows = []
    for scope, ms in profiled.items():
        if scope == OTHER and ms == 0:
            continue
        key = scopes[scope].lut_key if scope in scopes else ""
        entry = table.get(key)
        rows.append(
            {
                "layer": scope,
                "lut_key": key,
                "profiled_ms": ms,
                "share": ms / total,
                "lut_ms": float(entry["mean"]) if entry else None,
            }
        )
    return rows
