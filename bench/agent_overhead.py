"""Benchmark: agent overhead, from lease to report, against the inference it contains.

Run: .venv/bin/python -m bench.agent_overhead [--jobs 20] [--threads 1]

A real coordinator and one real agent on loopback; the jobs are the LUT entries of the
largest w1.0 subnet at 224 px (plus the whole subnet) measured with the engine's default
settings (warm-up >= 10 runs and 0.5 s, >= 50 runs and 1 s). For each job: wall time from
the lease being issued to the report being stored (coordinator clock) against the inference
inside it: warm-up plus timed runs. Target: wall <= 1.1 x inference + 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from agent.device import machine_summary
from coordinator.services.jobs import BenchOptions
from ofa.config import SubnetConfig
from ofa.nn.export import export_lut_entries, export_subnet
from ofa.nn.supernet import OFAMobileNetV3
from tests.fleet import Fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    config = SubnetConfig.largest(r=224)
    models = [(k, a.onnx) for k, a in export_lut_entries(config).items()]
    models.append(("whole-subnet", export_subnet(OFAMobileNetV3().eval(), config).onnx))
    models = (models * (args.jobs // len(models) + 1))[: args.jobs]
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(Path(tmp))
        try:
            fleet.start_server()
            fleet.start_agent("bench")
            jobs = fleet.enqueue(models, options=BenchOptions(threads=args.threads))
            fleet.wait_done(jobs, timeout=60 * len(jobs))
            rows = fleet.store.result_timings()
        finally:
            fleet.close()

    wall = np.array([r.received_at - r.issued_at for r in rows])
    timed = np.array([r.samples_ns.sum() / 1e9 for r in rows])
    warmup = np.array([(r.warmup_ns or 0) / 1e9 for r in rows])
    inference = timed + warmup
    overhead = wall - inference
    budget = 1.1 * inference + 0.3
    report = {
        "machine": machine_summary(),
        "jobs": len(rows),
        "threads": args.threads,
        "wall_s_median": float(np.median(wall)),
        "inference_s_median": float(np.median(inference)),
        "overhead_s": {"median": float(np.median(overhead)), "max": float(overhead.max())},
        "session_create_ms_median": float(
            np.median([r.session_create_ns or 0 for r in rows]) / 1e6
        ),
        "wall_over_inference": {
            "median": float(np.median(wall / inference)),
            "max": float((wall / inference).max()),
        },
        "jobs_within_target": int((wall <= budget).sum()),
        "wall_over_timed_runs_only": float(np.median(wall / timed)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
