"""Benchmark: many deployment scenarios (latency model x budget) in one `specialize` run.

Run: .venv/bin/python -m bench.scenarios --db runs/predictor-data/fleet.db [--scenarios 40]

Sources: the Note10 tables, every predictor trained in `--db` and every LUT folder given with
--lut, keeping those of the accuracy predictor's width (the official one is w1.2). The
`--scenarios` budgets are spread over the sources, from 1.2x to 5x each one's fastest
reachable latency. Target: 40 scenarios (e.g. 5 budgets x 8 latency models) in under 20 s.
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

from agent.device import machine_summary
from coordinator.services.specialise import Scenario, latency_model
from ofa.search import fastest_configs
from tests.conftest import ASSETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--lut", action="append", default=[])
    parser.add_argument("--scenarios", type=int, default=40)
    args = parser.parse_args()

    sources = [{"lut": str(ASSETS / "note10"), "name": "note10"}]
    sources += [{"lut": lut, "name": Path(lut).name} for lut in args.lut]
    for path in sorted(Path(f"{args.db}.predictors").glob("*/*.json")):
        sources.append(
            {
                "device": path.parent.name,
                "kind": path.stem,
                "name": f"{path.parent.name}-{path.stem}",
            }
        )
    models = {
        s["name"]: latency_model(
            args.db,
            Scenario(s["name"], (), s.get("device"), s.get("kind", "lut-ridge"), s.get("lut")),
        )
        for s in sources
    }
    sources = [s for s in sources if models[s["name"]].width == 1.2]
    per_source = -(-args.scenarios // len(sources))
    for source in sources:
        model = models[source["name"]]
        known = model.resolutions
        allowed = known[known >= 160] if (known >= 160).any() else known
        fastest = float(model.predict(fastest_configs(allowed.tolist(), model.width)).min())
        source["latency_ms"] = np.round(np.linspace(1.2, 5.0, per_source) * fastest, 2).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = Path(tmp) / "scenarios.json"
        scenarios.write_text(json.dumps(sources))
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "coordinator",
                "specialize",
                "--db",
                args.db,
                "--scenarios",
                str(scenarios),
                "--acc-predictor",
                str(ASSETS / "acc_predictor.pth"),
                "--out",
                str(Path(tmp) / "out"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
    print(done.stdout)
    print(
        json.dumps(
            {
                "machine": machine_summary(),
                "sources": len(sources),
                "scenarios": sum(len(s["latency_ms"]) for s in sources),
                "wall_s_including_start_up": round(wall, 2),
                "reported": done.stdout.strip().splitlines()[-1],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
