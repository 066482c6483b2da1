"""Benchmark: our evolutionary search against the OFA tutorial's EvolutionFinder, side by
side: Note10 tables, the authors' accuracy predictor, a 25 ms budget.

Run: .venv/bin/python -m bench.search_vs_reference [--rounds 3]

Each round runs the reference (500 generations, in its own process from the oracle folder;
only its search is timed) and then ours at 100, 200 and 500 generations, alternating, so
machine drift hits both; each round uses its own seed on both sides. Target: predicted accuracy
>= the reference's at >= 20x less time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from agent.device import machine_summary
from ofa.accuracy import AccuracyPredictor
from ofa.latency_model import BlockTable, LutSum
from ofa.lut import LatencyTable
from ofa.search import SearchSettings, evolutionary_search
from tests.conftest import ASSETS
from tests.oracle import run_reference

RESOLUTIONS = (160, 176, 192, 208, 224)
GENERATIONS = (100, 200, 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=25.0)
    args = parser.parse_args()

    tables = LatencyTable.from_ofa_yaml(ASSETS / "note10")
    latency = LutSum.fit(BlockTable.from_lut(tables.means(), 1.2))
    accuracy = AccuracyPredictor.load(ASSETS / "acc_predictor.pth")
    runs: dict[str, list[dict]] = {"reference (500 generations)": []}
    runs.update({f"ours, {g} generations": [] for g in GENERATIONS})
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            ref = run_reference(
                {
                    "width": 1.2,
                    "subnets": [],
                    "evolution": {
                        "lut_dir": str(ASSETS / "note10"),
                        "predictor": str(ASSETS / "acc_predictor.pth"),
                        "budget": args.budget,
                        "seed": round_,
                    },
                },
                Path(tmp),
            )["evolution"]
        runs["reference (500 generations)"].append(ref)
        for generations in GENERATIONS:
            started = time.perf_counter()
            result = evolutionary_search(
                accuracy.predict,
                latency.predict,
                args.budget,
                RESOLUTIONS,
                1.2,
                SearchSettings(generations=generations, seed=round_),
            )
            runs[f"ours, {generations} generations"].append(
                {
                    "seconds": time.perf_counter() - started,
                    "accuracy": result.accuracy,
                    "latency_ms": result.latency_ms,
                }
            )
    summary = {
        name: {
            "seconds_median": statistics.median(r["seconds"] for r in rs),
            "accuracy_median": statistics.median(r["accuracy"] for r in rs),
            "accuracy_min": min(r["accuracy"] for r in rs),
            "latency_ms_max": max(r["latency_ms"] for r in rs),
        }
        for name, rs in runs.items()
    }
    reference = summary["reference (500 generations)"]["seconds_median"]
    for name in summary:
        summary[name]["speedup_vs_reference"] = reference / summary[name]["seconds_median"]
    print(
        json.dumps(
            {
                "machine": machine_summary(),
                "budget_ms": args.budget,
                "rounds": args.rounds,
                "results": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
