"""Per-node timings of one model from onnxruntime's own profiler (`ofa-agent bench --profile`).

The profiler slows every run it records, so it gets a session of its own, after the timed
measurement: the latency reported stays the unprofiled one. Warm-up runs are left out by
time: only the node events inside the last `runs` `model_run` events count. A node's time is
its kernel's (`<node>_kernel_time`), averaged over those runs; its scope is the first part
of its name (`/blocks.3/conv/depth_conv/conv/Conv` -> `blocks.3`), which names the module of
the exported network it came from.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.measure import (
    GPU_PROVIDERS,
    BenchSettings,
    ort_session,
    session_feeds,
    session_options,
)
from agent.pinning import claimed_cores, pinned

__all__ = [
    "NodeTime",
    "profile_nodes",
    "by_op_type",
    "check_size",
    "PROFILE_RUNS",
    "PROFILE_WARMUP_RUNS",
    "MAX_NODES",
    "MAX_NAME",
]

PROFILE_RUNS = 20
PROFILE_WARMUP_RUNS = 5
# What one profile may hold (the coordinator refuses more): an OFA subnet has about 150-250
# nodes, a ResNet50 about 200, and node names are module paths such as
# /blocks.3/conv/depth_conv/conv/Conv.
MAX_NODES = 4096
MAX_NAME = 512
_KERNEL = "_kernel_time"


@dataclass(frozen=True)
class NodeTime:
    node: str  # the ONNX node's name
    op_type: str
    scope: str  # the top-level module it belongs to, or "" for nodes without one
    mean_us: float  # its kernel's mean time per run


def profile_nodes(
    model: str | Path | bytes,
    settings: BenchSettings = BenchSettings(),
    input_shapes: Sequence[Sequence[int]] | None = None,
    runs: int = PROFILE_RUNS,
) -> list[NodeTime]:
    """Each node that ran, in the order it first ran, with its mean kernel time over `runs`
    runs after PROFILE_WARMUP_RUNS (onnxruntime only)."""
    if settings.runtime != "onnxruntime":
        raise ValueError(f"runtime: profiles come from onnxruntime, not {settings.runtime!r}")
    if settings.execution_provider in GPU_PROVIDERS:
        raise ValueError(
            f"provider: onnxruntime's profiler times {settings.execution_provider}'s kernel "
            "launches on the host, not the GPU's work: profiles are for CPU providers"
        )
    if runs < 1:
        raise ValueError(f"runs: expected an integer >= 1, got {runs}")
    source = model if isinstance(model, bytes) else str(model)
    with (
        claimed_cores(settings.threads if settings.pin_cores else 0) as claimed,
        pinned(claimed) as cores,
        tempfile.TemporaryDirectory() as folder,
    ):
        options = session_options(settings, cores)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder, "ort"))
        session = ort_session(
            source, options, settings.execution_provider, settings.model_precision
        )
        feeds = session_feeds(session, input_shapes)
        for _ in range(PROFILE_WARMUP_RUNS + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    return _node_times(events, runs)


def _node_times(events: list[dict], runs: int) -> list[NodeTime]:
    windows = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[-runs:]
    if len(windows) < runs:
        raise ValueError(f"the profile holds {len(windows)} runs, expected {runs}")
    start = windows[0][0]
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.get("ts", 0)):
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(_KERNEL) or event["ts"] < start:
            continue
        node = name.removesuffix(_KERNEL)
        times.setdefault(node, []).append(float(event["dur"]))
        ops[node] = event.get("args", {}).get("op_name", "")
    return [
        NodeTime(node, ops[node], _scope(node), sum(durations) / runs)
        for node, durations in times.items()
    ]


def _scope(node: str) -> str:
    """`/blocks.3/conv/.../Conv` -> `blocks.3`; a name without a path -> ''."""
    parts = node.split("/")
    return parts[1] if node.startswith("/") and len(parts) > 2 else ""


def check_size(nodes: Sequence[NodeTime]) -> None:
    """ValueError when the profile is larger than a coordinator takes."""
    if len(nodes) > MAX_NODES:
        raise ValueError(f"profile: {len(nodes)} nodes, at most {MAX_NODES} are reported")
    for node in nodes:
        if max(len(node.node), len(node.scope)) > MAX_NAME or len(node.op_type) > 64:
            raise ValueError(f"profile: node {node.node[:80]!r}: a name over {MAX_NAME} characters")


def by_op_type(nodes: Sequence[NodeTime]) -> list[dict]:
    """A row per operator type: `op_type`, mean microseconds per run, `nodes` of that type
    and `share` of the whole, largest first."""
    totals: dict[str, list[float]] = {}
    for node in nodes:
        totals.setdefault(node.op_type or "?", []).append(node.mean_us)
    whole = sum(sum(times) for times in totals.values()) or 1.0
    rows = [
        {"op_type": op, "mean_us": sum(times), "nodes": len(times), "share": sum(times) / whole}
        for op, times in totals.items()
    ]
    return sorted(rows, key=lambda row: -row["mean_us"])
