"""Benchmark: per-device latency predictors against the noise floor, few-sample adaptation,
and prediction speed.

Run: .venv/bin/python -m bench.predictors --db runs/predictor-data/fleet.db
(after `python -m bench.predictor_data --out runs/predictor-data` has measured the data)

cpu-1t: LUT at 160..224 px and ~300 random subnets measured twice, interleaved in one
campaign; a third of the subnets (by id) are held out. Each predictor kind is trained on the
rest and scored against each repeat of the held-out subnets; the noise floor scores one
repeat against the other. cpu-2t (2 threads) is the new device: the cpu-1t predictor is
adapted from K of its subnets (K = 10, 20, 50; 5 random draws each) and scored on its
held-out subnets.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

from agent.device import machine_summary
from coordinator.services.lut_export import collect_lut
from coordinator.services.predictor_data import device_lut, measured_subnets, split
from coordinator.services.predictors import evaluate, noise_floor
from coordinator.state import Store
from ofa.batch import ConfigBatch
from ofa.config import sample_configs
from ofa.latency_model import BlockTable, Transfer, fit_predictor

KEYS = (
    "rmse_ms",
    "rmse_pct",
    "mape_pct",
    "within_5pct",
    "within_10pct",
    "kendall_tau",
    "spearman_rho",
)


def rounded(metrics: dict | None) -> dict | None:
    """The metrics to 4 decimals; None where there were none (no noise floor)."""
    return None if metrics is None else {k: round(metrics[k], 4) for k in KEYS}


def speed(model, width: float, n: int = 100_000) -> float:
    batch = ConfigBatch.from_configs(sample_configs(1000, 7, (160, 176, 192, 208, 224), width))
    big = ConfigBatch(
        np.tile(batch.ks, (n // 1000, 1)),
        np.tile(batch.e, (n // 1000, 1)),
        np.tile(batch.d, (n // 1000, 1)),
        np.tile(batch.r, n // 1000),
        width,
    )
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        model.predict(big)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--device", default="cpu-1t")
    parser.add_argument("--new-device", default="cpu-2t")
    args = parser.parse_args()

    store = Store(args.db)
    lut, family, width, _ = device_lut(collect_lut(store, args.device))
    table = BlockTable.from_lut(lut, width, family)
    training, held_out = split(measured_subnets(store, args.device))
    report = {
        "machine": machine_summary(),
        "device": args.device,
        "training_subnets": len(training),
        "held_out_subnets": len(held_out),
        "noise_floor": rounded(noise_floor(held_out)),
        "predictors": {},
        "speed": {},
    }
    models = {}
    for kind in ("lut", "lut-corrected", "lut-ridge"):
        models[kind] = fit_predictor(
            kind, table, [m.config for m in training], [m.median_ms for m in training]
        )
        report["predictors"][kind] = rounded(evaluate(models[kind], held_out))
        report["speed"][kind] = round(speed(models[kind], width))
    floor = report["noise_floor"]["rmse_ms"]
    report["ridge_rmse_over_floor"] = round(report["predictors"]["lut-ridge"]["rmse_ms"] / floor, 3)

    new_training, new_held_out = split(measured_subnets(store, args.new_device))
    adaptation = {
        "unadapted": rounded(evaluate(models["lut-ridge"], new_held_out)),
        "noise_floor": rounded(noise_floor(new_held_out)),
    }
    for k in (10, 20, 50):
        runs = []
        for draw in range(5):
            chosen = random.Random(draw).sample(new_training, min(k, len(new_training)))
            adapted = Transfer.fit(
                models["lut-ridge"], [m.config for m in chosen], [m.median_ms for m in chosen]
            )
            runs.append(evaluate(adapted, new_held_out))
        adaptation[f"K={k}"] = rounded({key: np.mean([r[key] for r in runs]) for key in KEYS})
    report["new_device"] = {
        "device": args.new_device,
        "held_out_subnets": len(new_held_out),
        "source": f"{args.device} lut-ridge",
        "results": adaptation,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
