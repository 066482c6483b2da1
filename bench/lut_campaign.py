"""Benchmark: one full LUT (96 entries, one resolution) on one local agent.

Run: .venv/bin/python -m bench.lut_campaign [--resolution 224] [--repeats 1] [--threads 1]

A real coordinator and one real agent on loopback; a `lut` campaign with the engine's
default settings (warm-up >= 10 runs and 0.1 s and on until stable, >= 50 runs and 1 s) and
the drift reference interleaved every 25 jobs. Reported: campaign wall time (start to last
result) against the inference it contains, counted two ways: all inference the agent ran
(warm-up + timed runs) and timed runs only. Target: wall / inference <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.device import machine_summary
from coordinator.services.campaigns import (
    CampaignSpec,
    campaign_status,
    create_campaign,
    start_campaign,
)
from coordinator.services.jobs import BenchOptions
from coordinator.services.results_export import campaign_results
from coordinator.state import BlobStore, Devices
from tests.fleet import Fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(Path(tmp))
        try:
            fleet.start_server()
            fleet.start_agent("bench", labels=("bench",))
            fleet.agent_id("bench")
            store = fleet.store
            spec = CampaignSpec(
                name="bench",
                targets=(Devices(label="bench"),),
                workload="lut",
                resolutions=(args.resolution,),
                repeats=args.repeats,
                options=BenchOptions(threads=args.threads),
            )
            t0 = time.perf_counter()
            campaign = create_campaign(store, BlobStore(store), spec)
            build_s = time.perf_counter() - t0
            start_campaign(store, campaign)
            started = time.time()
            while campaign_status(store, campaign)["state"] != "done":
                time.sleep(0.5)
            rows = [r for r in campaign_results(store, campaign) if r["accepted"]]
        finally:
            fleet.close()

    wall = max(r["received_at"] for r in rows) - started
    timed = sum(np.sum(r["samples_ns"], dtype=np.int64) for r in rows) / 1e9
    warmup = sum(r["warmup_ns"] for r in rows) / 1e9
    print(
        json.dumps(
            {
                "machine": machine_summary(),
                "resolution": args.resolution,
                "repeats": args.repeats,
                "threads": args.threads,
                "jobs": len(rows),
                "build_models_s": build_s,
                "campaign_wall_s": wall,
                "inference_s": timed + warmup,
                "timed_runs_s": timed,
                "wall_over_inference": wall / (timed + warmup),
                "wall_over_timed_runs": wall / timed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
