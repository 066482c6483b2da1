"""Benchmark: int8 LUT entries against fp32 on this CPU, with int8 (S8S8) and uint8 (U8S8)
activations side by side.

Run: .venv/bin/python -m bench.int8_activations [--resolution 160] [--threads 1]

Four w1.0 LUT entries at --resolution (depthwise 3x3, 5x5 and 7x7, early and late stages),
each exported in fp32 and quantised both ways (QDQ, per-channel int8 weights, the campaigns'
fixed calibration set), measured one after the other with the agent's engine and its
default settings. Prints each entry's median in ms and the ratio to fp32.
"""

from __future__ import annotations

import argparse
import json

from agent.device import machine_summary
from agent.measure import BenchSettings, measure
from ofa.nn.export import export_model, input_shape, lut_entry_module
from ofa.nn.precision import to_int8
from ofa.plan import space_lut_specs

ENTRIES = (  # LUT-key fragments: one entry each
    "input:80x80x16-output:40x40x24-expand:96-kernel:7-stride:2",
    "input:40x40x24-output:40x40x24-expand:144-kernel:3-stride:1",
    "input:40x40x24-output:20x20x40-expand:96-kernel:7-stride:2",
    "input:10x10x112-output:10x10x112-expand:672-kernel:5-stride:1",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    specs = space_lut_specs(args.resolution, 1.0)
    settings = BenchSettings(threads=args.threads)
    rows = []
    for fragment in ENTRIES:
        spec = next(s for s in specs if fragment in s.lut_key)
        shape = input_shape(spec)
        fp32 = export_model(lut_entry_module(spec), shape)
        models = {
            "fp32": fp32,
            "s8s8": to_int8(fp32, shape),
            "u8s8": to_int8(fp32, shape, unsigned_activations=True),
        }
        ms = {name: measure(model, settings).stats()["median_ms"] for name, model in models.items()}
        rows.append(
            {
                "key": spec.lut_key,
                **{f"{name}_ms": round(value, 4) for name, value in ms.items()},
                "s8s8_over_fp32": round(ms["s8s8"] / ms["fp32"], 2),
                "u8s8_over_fp32": round(ms["u8s8"] / ms["fp32"], 2),
            }
        )
    print(json.dumps({"machine": machine_summary(), "entries": rows}, indent=2))


if __name__ == "__main__":
    main()
