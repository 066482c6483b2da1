"""Benchmark: wall time to export one subnet to ONNX (extraction + TorchScript export).

Run: .venv/bin/python -m bench.export_time [--count 20] [--seed 0] [--width 1.0]

Random subnets at 160..224 px are exported in turn; the first export (which pays for
TorchScript's one-time set-up) is reported apart. LUT-entry export is timed for the same
subnets, interleaved with the whole-subnet exports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from agent.device import machine_summary
from ofa.config import SubnetConfig, sample_configs
from ofa.nn.export import export_lut_entries, export_module
from ofa.nn.supernet import OFAMobileNetV3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()

    supernet = OFAMobileNetV3(args.width).eval()
    configs = sample_configs(args.count, args.seed, (160, 176, 192, 208, 224), args.width)
    t0 = time.perf_counter()
    export_module(supernet.get_active_subnet(SubnetConfig.smallest(w=args.width)), (1, 3, 224, 224))
    first_s = time.perf_counter() - t0

    extract, export, lut = [], [], []
    for config in configs:
        t0 = time.perf_counter()
        subnet = supernet.get_active_subnet(config)
        t1 = time.perf_counter()
        export_module(subnet, (1, 3, config.r, config.r))
        t2 = time.perf_counter()
        entries = export_lut_entries(config)
        t3 = time.perf_counter()
        extract.append(t1 - t0)
        export.append(t2 - t1)
        lut.append((t3 - t2) / len(entries))

    def q(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_s": statistics.median(values),
            "p90_s": ordered[int(0.9 * (len(ordered) - 1))],
            "max_s": ordered[-1],
        }

    whole = [a + b for a, b in zip(extract, export, strict=True)]
    report = {
        "machine": machine_summary(),
        "torch": torch.__version__,
        "count": args.count,
        "width": args.width,
        "first_export_s": first_s,
        "subnet_export": q(whole),
        "of_which_extraction": q(extract),
        "lut_entry_export": q(lut),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
