"""Benchmark: many deployment scenarios (latency model x budget) in one `specialize` run,
each answer beside the single-budget search of the same scenario.

Run: .venv/bin/python -m bench.scenarios [--db runs/predictor-data/fleet.db] [--models 8]
     [--acc-format npz|pth] [--jobs N]

Sources: the Note10 tables, every w1.2 predictor trained in `--db`, every LUT folder given
with --lut; when these are fewer than `--models`, synthetic devices fill up: `lut-ridge`
predictors over the Note10 table whose 90 block-type multipliers are drawn from 0.5..1.5
(seeded), so each ranks the blocks differently. The `--scenarios` budgets are spread over
the sources, from 1.2x to 3x each one's fastest reachable latency. Then each scenario is
searched alone (`evolutionary_search`, the same default settings and seed) and its answer
compared. Target (issue 16): 40 scenarios (8 latency models x 5 budgets) in <= 2 s, each
answer >= the single-budget search's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from agent.device import machine_summary
from coordinator.services.predictor_data import predictor_path
from coordinator.services.predictors import stored_predictors
from coordinator.services.specialise import Scenario, allowed_resolutions, latency_model
from coordinator.services.targets import Target
from coordinator.state import Store
from ofa.accuracy import AccuracyPredictor
from ofa.latency_model import N_TYPES, LutRidge
from ofa.search import SearchSettings, evolutionary_search, fastest_configs
from tests.conftest import ASSETS


def synthetic_devices(db: Path, count: int) -> list[dict]:
    """`count` lut-ridge predictors over the Note10 table with seeded random multipliers,
    stored as devices `synthetic-<i>` of `db`."""
    note10 = latency_model(None, Scenario("note10", (), lut=str(ASSETS / "note10")))
    sources = []
    for i in range(count):
        multipliers = np.random.default_rng(i).uniform(0.5, 1.5, N_TYPES)
        model = LutRidge(
            table=note10.table,
            multipliers=tuple(multipliers.tolist()),
            fixed_scale=1.0,
            per_block=0.0,
            offset=0.0,
            alpha=1.0,
            provenance={"synthetic": f"Note10 table, multipliers uniform 0.5..1.5, seed {i}"},
        )
        model.save(predictor_path(db, f"synthetic-{i}", "lut-ridge", Target().name))
        sources.append({"device": f"synthetic-{i}", "kind": "lut-ridge", "name": f"synthetic-{i}"})
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db")
    parser.add_argument("--lut", action="append", default=[])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--scenarios", type=int, default=40)
    parser.add_argument(
        "--acc-format",
        choices=("npz", "pth"),
        default="npz",
        help="The accuracy predictor as `assets fetch` converts it (npz, read without torch) "
        "or the authors' .pth (the command then imports torch to read it)",
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="specialize --jobs (0: one per usable CPU)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "fleet.db"
        if not args.db:
            Store(db)
        sources = [{"lut": str(ASSETS / "note10"), "name": "note10"}]
        sources += [{"lut": lut, "name": Path(lut).name} for lut in args.lut]
        for device in sorted(p.name for p in Path(f"{db}.predictors").glob("*") if p.is_dir()):
            for target, kinds in stored_predictors(db, device).items():
                sources += [
                    {
                        "device": device,
                        "kind": kind,
                        "target": target,
                        "name": f"{device}-{target}-{kind}",
                    }
                    for kind in kinds
                ]
        models = {s["name"]: latency_model(db, _scenario(s)) for s in sources}
        sources = [s for s in sources if models[s["name"]].width == 1.2]
        if len(sources) < args.models:
            extra = synthetic_devices(db, args.models - len(sources))
            models.update({s["name"]: latency_model(db, _scenario(s)) for s in extra})
            sources += extra
        per_source = -(-args.scenarios // len(sources))
        for source in sources:
            model = models[source["name"]]
            allowed = allowed_resolutions(model, None)
            fastest = float(model.predict(fastest_configs(allowed, model.width)).min())
            source["latency_ms"] = np.round(np.linspace(1.2, 3.0, per_source) * fastest, 2).tolist()
        scenarios = Path(tmp) / "scenarios.json"
        scenarios.write_text(json.dumps(sources))
        predictor = ASSETS / "acc_predictor.pth"
        if args.acc_format == "npz":
            predictor = Path(tmp) / "acc_predictor.npz"
            AccuracyPredictor.load(ASSETS / "acc_predictor.pth").save(predictor)
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "coordinator",
                "specialize",
                "--db",
                str(db),
                "--scenarios",
                str(scenarios),
                "--acc-predictor",
                str(predictor),
                "--jobs",
                str(args.jobs),
                "--format",
                "json",
                "--out",
                str(Path(tmp) / "out"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
    rows = json.loads(done.stdout)
    accuracy = AccuracyPredictor.load(ASSETS / "acc_predictor.pth")
    differences = []
    for row in rows:
        model = models[row["scenario"]]
        with threadpool_limits(1, user_api="blas"):  # as the command searches: same rounding
            alone = evolutionary_search(
                accuracy.predict,
                model.predict,
                row["budget_ms"],
                allowed_resolutions(model, None),
                model.width,
                SearchSettings(),
                family=model.family,
            )
        differences.append(row["accuracy"] - alone.accuracy)
        print(
            f"{row['scenario']:>12} {row['budget_ms']:7.2f} ms: {row['accuracy']:.5f} "
            f"(alone {alone.accuracy:.5f}, {differences[-1]:+.5f})"
        )
    print(
        json.dumps(
            {
                "machine": machine_summary(),
                "sources": len(sources),
                "accuracy_predictor": args.acc_format,
                "jobs": args.jobs,
                "scenarios": len(rows),
                "wall_s_including_start_up": round(wall, 2),
                "reported": done.stderr.strip().splitlines()[-1],
                "answers_at_least_the_single_search": sum(d >= 0 for d in differences),
                "worst_difference": round(min(differences), 6),
            },
            indent=2,
        )
    )


def _scenario(source: dict) -> Scenario:
    return Scenario(
        source["name"],
        (),
        source.get("device"),
        source.get("kind", "lut-ridge"),
        source.get("lut"),
        source.get("target"),
    )


if __name__ == "__main__":
    main()
