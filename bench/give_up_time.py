"""Benchmark: how long the measurement engine and the search take to give up.

Run: .venv/bin/python -m bench.give_up_time [--rounds 10] [--max-time 0.3]

Two figures the tests check by behaviour, not by the clock (the test machine is shared):
- the engine asked for a precision it cannot reach stops at its time cap `--max-time`:
  wall time of the whole `measure` call (session creation and warm-up included) and of its
  timed phase beyond the cap, on the largest w1.0 subnet's fifth LUT entry at 64 px (the
  model tests/test_measure.py uses);
- an impossible latency budget (5 ms, Note10 tables, the official accuracy predictor) is
  refused at once: wall time of `evolutionary_search` until it raises, beside one search
  with a reachable budget (25 ms, 40 generations) as the machine's calibration.
Rounds alternate the cases. Needs ../shared/ofa-assets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agent.device import machine_summary
from agent.measure import BenchSettings, measure
from ofa.accuracy import AccuracyPredictor
from ofa.config import SubnetConfig
from ofa.latency_model import BlockTable, LutSum
from ofa.lut import LatencyTable
from ofa.nn.export import export_lut_entry
from ofa.plan import layer_plan
from ofa.search import ImpossibleBudget, SearchSettings, evolutionary_search

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "ofa-assets"
RESOLUTIONS = (160, 176, 192, 208, 224)


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "max": float(max(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-time", type=float, default=0.3)
    args = parser.parse_args()

    model = export_lut_entry(layer_plan(SubnetConfig.largest(r=64))[4]).onnx
    capped = BenchSettings(
        warmup_runs=1,
        warmup_min_s=0.0,
        min_runs=5,
        min_time_s=0.0,
        max_time_s=args.max_time,
        target_precision=1e-9,
    )
    accuracy = AccuracyPredictor.load(ASSETS / "acc_predictor.pth")
    latency = LutSum.fit(
        BlockTable.from_lut(LatencyTable.from_ofa_yaml(ASSETS / "note10").means(), 1.2)
    )
    quick = SearchSettings(generations=40, seed=0)

    measure_s, beyond_cap_s, refuse_s, search_s = [], [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        result = measure(model, capped)
        measure_s.append(time.perf_counter() - t0)
        assert result.stop_reason == "time_cap"
        # the timed phase is at least the samples' sum; what ran past the cap is the last block
        beyond_cap_s.append(sum(result.samples_ns[-capped.block_runs :]) / 1e9)
        t0 = time.perf_counter()
        try:
            evolutionary_search(accuracy.predict, latency.predict, 5.0, RESOLUTIONS, 1.2, quick)
        except ImpossibleBudget:
            refuse_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evolutionary_search(accuracy.predict, latency.predict, 25.0, RESOLUTIONS, 1.2, quick)
        search_s.append(time.perf_counter() - t0)

    print(
        json.dumps(
            {
                "machine": machine_summary(),
                "rounds": args.rounds,
                "max_time_s": args.max_time,
                "measure_at_time_cap_wall_s": _summary(measure_s),
                "measure_last_block_s": _summary(beyond_cap_s),
                "impossible_budget_refused_s": _summary(refuse_s),
                "reachable_budget_search_40_generations_s": _summary(search_s),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
