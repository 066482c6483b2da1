"""Benchmark: how well a device's peak memory is predicted (`specialize --max-peak-mb`).

Run: .venv/bin/python -m bench.peak_memory --db runs/targets/fleet.db [--label cpu]
(after `python -m bench.targets --out runs/targets` has measured four targets)

For each measurement target of the label's subnets: the memory model (`ofa.resources`) is
fit on the training subnets (two thirds, by id) and scored on the held-out third, against
the median of each subnet's recorded peaks; the spread of a subnet's own repeats is the
floor a model of its architecture cannot beat.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from agent.device import machine_summary
from coordinator.services.campaigns import campaigns_by_target
from coordinator.services.predictor_data import split, target_subnets
from coordinator.state import Devices, Store
from ofa.batch import ConfigBatch
from ofa.resources import MIN_MEMORY_SUBNETS, MemoryModel, ResourceFigures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args()
    store = Store(args.db)
    rows = []
    for name in sorted(campaigns_by_target(store, Devices(label=args.label), "subnet", ())):
        data = target_subnets(store, args.label, target=name)
        measured = [m for m in data.measured if m.peaks_mb]
        training, held_out = split(measured)
        if len(training) < MIN_MEMORY_SUBNETS or not held_out:
            rows.append({"target": name, "skipped": f"{len(measured)} subnets record a peak"})
            continue
        batch = data.target.batch if data.target else 1
        model = MemoryModel.fit(
            [m.config for m in training], [float(np.median(m.peaks_mb)) for m in training], batch
        )
        configs = [m.config for m in held_out]
        figures = ResourceFigures.of(sorted({c.r for c in configs}), configs[0].w)
        predicted = model.predict(figures, ConfigBatch.from_configs(configs))
        actual = np.array([float(np.median(m.peaks_mb)) for m in held_out])
        repeats = [np.ptp(m.peaks_mb) for m in held_out if len(m.peaks_mb) > 1]
        rows.append(
            {
                "target": name,
                "training": len(training),
                "held_out": len(held_out),
                "peak_mb_range": [round(float(actual.min()), 1), round(float(actual.max()), 1)],
                "model": {
                    "base_mb": round(model.base_mb, 1),
                    "per_million_params_mb": round(float(model.per_param_mb), 2),
                    "per_million_activations_mb": round(float(model.per_activation_mb), 2),
                    "fit_rmse_mb": round(model.rmse_mb, 2),
                },
                "held_out_rmse_mb": round(float(np.sqrt(np.mean((predicted - actual) ** 2))), 2),
                "held_out_max_error_mb": round(float(np.abs(predicted - actual).max()), 2),
                "repeat_spread_median_mb": round(float(np.median(repeats)), 2) if repeats else None,
            }
        )
    print(json.dumps({"machine": machine_summary(), "targets": rows}, indent=2))


if __name__ == "__main__":
    main()
