"""Benchmark: the top-1 of chosen subnets, evaluated as the accuracy data set evaluates them.

Run: .venv/bin/python -m bench.evaluate_chosen CHECKPOINT SUBNET_JSON... [--data digits]
     [--calibration-images 500] [--seed 0]

Each subnet (a `subnet.json` that `specialize` or `demo` wrote) is evaluated on the data's
validation split after BN recalibration on a fixed slice of training images, exactly as
`ofa-coord train accuracy-dataset` evaluates the pairs an accuracy predictor learns from;
so its figure can be set beside the predictor's.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ofa.config import SubnetConfig
from ofa.nn.accuracy_dataset import subnet_accuracy
from ofa.nn.checkpoint import load_mbconv_supernet
from ofa.nn.data import fixed_indices, open_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("subnets", nargs="+")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--calibration-images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = open_data(args.data)
    supernet = load_mbconv_supernet(args.checkpoint).eval()
    calibration = fixed_indices(len(data.train), args.calibration_images, args.seed)
    rows = [
        {
            "subnet": path,
            "r": (config := SubnetConfig.from_file(path)).r,
            "top1": subnet_accuracy(supernet, config, data, calibration),
        }
        for path in args.subnets
    ]
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "validation_images": len(data.val),
                "calibration_images": len(calibration),
                "subnets": rows,
                "mean_top1": float(np.mean([r["top1"] for r in rows])),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
