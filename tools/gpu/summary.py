"""What tools/gpu/check_agent.sh prints: `summary.py device` reads `ofa-agent info`'s JSON,
`summary.py results` a campaign's `results export --format jsonl`, both on stdin. Exit 1
when a result is not a measurement (its message is printed)."""

from __future__ import annotations

import json
import statistics
import sys


def device(info: dict) -> None:
    gpu = info.get("gpu_name") or info.get("cuda_device") or "no GPU seen (no NVML, no CUDA)"
    providers = ", ".join(info.get("onnxruntime_providers", []))
    print(
        f"   {gpu}, driver {info.get('gpu_driver', 'not reported')}; onnxruntime "
        f"{info.get('onnxruntime_version')} with {providers}; torch "
        f"{info.get('torch_version', 'not installed')}"
    )


def span(rows: list[dict], key: str, unit: str) -> str:
    """The range of a telemetry field over every result's before and after."""
    values = [
        state[key]
        for row in rows
        for state in (row["telemetry_before"], row["telemetry_after"])
        if state and key in state
    ]
    return f"{min(values):g}-{max(values):g}{unit}" if values else "not reported"


def results(rows: list[dict]) -> int:
    """A campaign's subnets: those with an accepted measurement (a disturbed one measured
    again counts once), and why the others have none."""
    subnets = {row["key"] for row in rows}
    measured = [row for row in rows if row["accepted"]]
    for row in rows:
        if row["status"] == "failed":
            print(f"   failed: {(row['message'] or '')[:300]}")
    if not measured:
        print(f"   none of {len(subnets)} subnets measured")
        return 1
    medians = sorted(row["median_ms"] for row in measured)
    print(
        f"   {len(measured)} of {len(subnets)} subnets measured; median latency "
        f"{medians[0]:.3f} / {statistics.median(medians):.3f} / {medians[-1]:.3f} ms "
        "(fastest / median / slowest)"
    )
    versions = measured[0]["runtime_versions"] or {}
    print("   " + ", ".join(f"{name} {value}" for name, value in sorted(versions.items())))
    print(
        f"   GPU {span(measured, 'gpu_index', '')}: SM clock "
        f"{span(measured, 'gpu_sm_clock_mhz', ' MHz')}, memory clock "
        f"{span(measured, 'gpu_memory_clock_mhz', ' MHz')}, temperature "
        f"{span(measured, 'gpu_temperature_c', ' C')}, memory used "
        f"{span(measured, 'gpu_memory_used_bytes', ' B')}"
    )
    return 0 if len(measured) == len(subnets) else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["device"]:
        device(json.load(sys.stdin))
    elif sys.argv[1:] == ["results"]:
        sys.exit(results([json.loads(line) for line in sys.stdin if line.strip()]))
    else:
        sys.exit("usage: summary.py device|results < JSON")
