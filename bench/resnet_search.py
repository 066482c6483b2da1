"""Benchmark: our OFA-ResNet50 search against the reference's EvolutionFinder (the library's,
500 generations, under a MACs budget with ResNet50FLOPsModel), both on the authors'
ResNet50 accuracy predictor, seed by seed.

Run: .venv/bin/python -m bench.resnet_search [--budgets 1500,2500,4000] [--seeds 3]

Both search the official predictor's resolutions (128..256). Ours runs in this process with
the default SearchSettings; the reference runs in its own (tests/oracle) and times only its
search. Our MACs of each reference answer are checked against the reference's count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from agent.device import machine_summary
from ofa.plan import count_macs
from ofa.resnet import PREDICTOR_RESOLUTIONS, ResNetAccuracyPredictor, ResNetConfig
from ofa.resnet_search import resnet_search
from ofa.search import SearchSettings
from tests.conftest import ASSETS
from tests.oracle import run_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="1500,2500,4000", help="MACs budgets, millions")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=500, help="the reference's")
    args = parser.parse_args()
    path = ASSETS / "ofa_resnet50_acc_predictor.pth"
    predictor = ResNetAccuracyPredictor.load(path)
    rows = []
    for budget in [float(b) for b in args.budgets.split(",")]:
        seeds = list(range(args.seeds))
        with tempfile.TemporaryDirectory() as tmp:
            reference = run_reference(
                {
                    "family": "resnet50",
                    "width": 1.0,
                    "subnets": [],
                    "resnet_evolution": {
                        "predictor": str(path),
                        "budget_mflops": budget,
                        "seeds": seeds,
                        "generations": args.generations,
                    },
                },
                Path(tmp),
            )["evolution"]
        for theirs in reference:
            arch = theirs["arch"]
            config = ResNetConfig.from_dict(arch)  # OFA's spelling: "image_size"
            assert abs(count_macs(config) / 1e6 - theirs["mflops"]) < 1e-3, (config, theirs)
            started = time.perf_counter()
            ours = resnet_search(
                predictor.predict,
                lambda c: count_macs(c) / 1e6,
                budget,
                PREDICTOR_RESOLUTIONS,
                SearchSettings(seed=theirs["seed"]),
                "M MACs",
            )
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "budget_mmacs": budget,
                    "seed": theirs["seed"],
                    "ours": round(ours.accuracy, 5),
                    "reference": round(theirs["accuracy"], 5),
                    "ours_s": round(seconds, 3),
                    "reference_s": round(theirs["seconds"], 2),
                }
            )
            print(json.dumps(rows[-1]))
    summary = {}
    for budget in sorted({r["budget_mmacs"] for r in rows}):
        mine = [r for r in rows if r["budget_mmacs"] == budget]
        summary[str(budget)] = {
            "ours_mean": round(statistics.mean(r["ours"] for r in mine), 5),
            "reference_mean": round(statistics.mean(r["reference"] for r in mine), 5),
            "worst_difference": round(min(r["ours"] - r["reference"] for r in mine), 5),
            "speed_up": round(
                statistics.median(r["reference_s"] for r in mine)
                / statistics.median(r["ours_s"] for r in mine),
                1,
            ),
        }
    print(json.dumps({"machine": machine_summary(), "by_budget": summary}, indent=2))


if __name__ == "__main__":
    main()
