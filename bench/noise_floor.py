"""Benchmark: the noise floor (repeat-to-repeat RMSE of subnet medians) of the old and the
new measuring protocol, interleaved in one run.

Run: .venv/bin/python -m bench.noise_floor [--subnets 20] [--threads 1 2]

Random w1.0 subnets (160-224 px) are exported once and each measured twice by each
protocol, in two rounds; within a round the subnets are shuffled and the two protocols
alternate which goes first, so that drift of the machine hits both alike. The RMSE % of one
round's medians against the other's (both directions averaged, as `predictor eval`'s noise
floor) is the floor any latency predictor is judged against.
- old: a fixed 0.5 s warm-up, threads not pinned, every measurement taken as it came;
- new: the engine's defaults (warm-up until stable, threads pinned), and a measurement its
  evidence judges disturbed is taken again after a 1 s pause, up to 4 times (the agent and
  coordinator do this across leases).
Also reported: wall time per protocol, and how many measurements the new one re-took.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

from agent.device import machine_summary
from agent.measure import BenchSettings, Measurement, measure
from ofa.config import sample_configs
from ofa.metrics import regression_metrics
from ofa.nn.export import export_subnet
from ofa.nn.supernet import OFAMobileNetV3

OLD = {"warmup_min_s": 0.5, "pin_cores": False}
RETRIES, PAUSE_S = 4, 1.0


def measure_old(model: bytes, threads: int) -> tuple[Measurement, int]:
    return measure(model, BenchSettings(threads=threads, **OLD)), 0  # type: ignore[arg-type]


def measure_new(model: bytes, threads: int) -> tuple[Measurement, int]:
    """The new protocol: measured again while the evidence says disturbed."""
    result, retries = measure(model, BenchSettings(threads=threads)), 0
    while result.evidence.disturbed and retries < RETRIES:
        time.sleep(PAUSE_S)
        result, retries = measure(model, BenchSettings(threads=threads)), retries + 1
    return result, retries


PROTOCOLS = {"old": measure_old, "new": measure_new}


def floor(rounds: list[list[float]]) -> float:
    first, second = (np.array(r) for r in rounds)
    both = (regression_metrics(first, second), regression_metrics(second, first))
    return float(np.mean([m["rmse_pct"] for m in both]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    supernet = OFAMobileNetV3().eval()
    configs = sample_configs(args.subnets, args.seed, (160, 176, 192, 208, 224))
    models = [export_subnet(supernet, config).onnx for config in configs]
    rng = random.Random(args.seed)
    report: dict = {"machine": machine_summary(), "subnets": len(models), "threads": {}}
    for threads in args.threads:
        medians = {name: [[0.0] * len(models) for _ in range(2)] for name in PROTOCOLS}
        wall = dict.fromkeys(PROTOCOLS, 0.0)
        retaken = 0
        for round_ in range(2):
            order = list(range(len(models)))
            rng.shuffle(order)
            for position, i in enumerate(order):
                names = list(PROTOCOLS)[:: 1 if position % 2 else -1]  # alternate who is first
                for name in names:
                    start = time.perf_counter()
                    result, retries = PROTOCOLS[name](models[i], threads)
                    wall[name] += time.perf_counter() - start
                    medians[name][round_][i] = result.stats()["median_ms"]
                    retaken += retries
        report["threads"][threads] = {
            "rmse_pct": {name: round(floor(medians[name]), 2) for name in PROTOCOLS},
            "wall_s": {name: round(wall[name], 1) for name in PROTOCOLS},
            "new_retaken": retaken,
        }
        print(json.dumps({threads: report["threads"][threads]}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
