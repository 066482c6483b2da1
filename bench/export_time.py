"""Benchmark: wall time to export one subnet to ONNX (extraction + TorchScript export), and
the size of a family's LUT, for each supernet family.

Run: .venv/bin/python -m bench.export_time [--family mbv3|proxyless|resnet50] [--count 20]
     [--seed 0] [--width W] [--lut-resolution 224]

Random subnets at 160..224 px are exported in turn; the first export (which pays for
TorchScript's one-time set-up) is reported apart. LUT-entry export is timed for the same
subnets, interleaved with the whole-subnet exports. Then every LUT entry the family needs at
`--lut-resolution` is exported: how many there are, their ONNX bytes and the time it took
(what a `--workload lut` campaign builds once per resolution).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from agent.device import machine_summary
from ofa.nn.export import export_lut_entries, export_lut_entry, export_module
from ofa.nn.supernet import build_supernet, static_subnet
from ofa.zoo import FAMILY_NAMES, WIDTHS, check_family, lut_specs, sample_any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILY_NAMES, default=FAMILY_NAMES[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=float, help="default: the family's first")
    parser.add_argument("--lut-resolution", type=int, default=224)
    args = parser.parse_args()
    width = WIDTHS[args.family][0] if args.width is None else args.width
    check_family(args.family, width)

    configs = sample_any(args.count + 1, args.seed, (160, 176, 192, 208, 224), width, args.family)
    supernet = build_supernet(configs[0].supernet).eval()
    t0 = time.perf_counter()
    export_module(static_subnet(supernet, configs[0]), (1, 3, 224, 224))
    first_s = time.perf_counter() - t0

    extract, export, lut = [], [], []
    for config in configs[1:]:
        t0 = time.perf_counter()
        subnet = static_subnet(supernet, config)
        t1 = time.perf_counter()
        export_module(subnet, (1, 3, config.r, config.r))
        t2 = time.perf_counter()
        entries = export_lut_entries(config)
        t3 = time.perf_counter()
        extract.append(t1 - t0)
        export.append(t2 - t1)
        lut.append((t3 - t2) / len(entries))

    t0 = time.perf_counter()
    table = [
        export_lut_entry(spec).onnx for spec in lut_specs(args.lut_resolution, width, args.family)
    ]
    table_s = time.perf_counter() - t0

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
        "family": args.family,
        "supernet": supernet.name,
        "count": args.count,
        "subnet_export": q(whole),
        "of_which_extraction": q(extract),
        "lut_entry_export": q(lut),
        "first_export_s": first_s,
        "lut": {
            "resolution": args.lut_resolution,
            "entries": len(table),
            "onnx_mb": sum(map(len, table)) / 1e6,
            "export_s": table_s,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
