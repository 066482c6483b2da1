"""Benchmark: the coordinator under many simulated agents on loopback.

Run: .venv/bin/python -m bench.coordinator_load [--agents 500] [--seconds 60]

A real `ofa-coord serve` runs in its own process on a fresh SQLite file. This process plays
N agents over the real protocol (asyncio gRPC): each registers with its own token, reads the
model blob once, then loops LeaseJobs -> fake measurement (50 samples; it "takes"
`--measure-s` on average, uniform in 0.5x..1.5x, as a device spends ~1 s per job) ->
ReportResult, and heartbeats every interval. Reported: job round trips per second, the time
LeaseJobs takes to hand out a queued job (p50/p99), and a loss check against the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from agent.device import machine_summary
from coordinator.blobs import BlobStore
from coordinator.jobs import BenchOptions, make_spec
from coordinator.local import start_server
from coordinator.store import Store
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc



def prepare(db: Path, agents: int, jobs: int) -> list[str]:
    store = Store(db)
    model = bytes(random.Random(0).getrandbits(8) for _ in range(200_000))
    digest = BlobStore(store).put(model)
    spec = make_spec(digest, len(model), [("input", [1, 3, 64, 64])], BenchOptions(),
                     lut_key="fake").SerializeToString()
    for start in range(0, jobs, 5000):
        store.enqueue([(spec, digest)] * min(5000, jobs - start), label="sim")
    tokens = [store.create_token(f"sim{i}") for i in range(agents)]
    store.close()
    return tokens


async def simulated_agent(address: str, token: str, stop_at: float, stats: dict,
                          heartbeat_s: float, measure_s: float) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.FleetStub(channel)
        reply = await stub.Register(pb.RegisterRequest(labels=["sim"]), metadata=metadata,
                                    timeout=60)
        agent_id = reply.agent_id
        fetched = False
        next_beat = time.monotonic() + random.uniform(0, heartbeat_s)
        while time.monotonic() < stop_at:
            if time.monotonic() >= next_beat:
                await stub.Heartbeat(pb.HeartbeatRequest(agent_id=agent_id), metadata=metadata,
                                     timeout=30)
                next_beat += heartbeat_s
            t0 = time.perf_counter()
            leased = await stub.LeaseJobs(pb.LeaseJobsRequest(agent_id=agent_id, max_jobs=1,
                                                              wait_s=2), metadata=metadata,
                                          timeout=40)
            waited = time.perf_counter() - t0
            for job in leased.jobs:
                stats["lease_s"].append(waited)
                if not fetched:
                    await stub.ReadBlob(pb.ReadBlobRequest(digest=job.spec.model_digest,
                                                           limit=2**20), metadata=metadata,
                                        timeout=30)
                    fetched = True
                await asyncio.sleep(random.uniform(0.5, 1.5) * measure_s)
                samples = np.random.default_rng().integers(900_000, 1_100_000, 50).tolist()
                result = pb.Result(status=pb.RESULT_STATUS_OK, samples_ns=samples,
                                   stop_reason="precision")
                outcome = await stub.ReportResult(pb.ReportResultRequest(
                    agent_id=agent_id, job_id=job.job_id, lease_id=job.lease_id, result=result),
                    metadata=metadata, timeout=30)
                stats["reported"] += 1
                stats["accepted"] += int(outcome.accepted)
                stats["done_at"].append(time.monotonic())


async def drive(address: str, tokens: list[str], seconds: float, heartbeat_s: float,
                measure_s: float) -> dict:
    stats = {"lease_s": [], "reported": 0, "accepted": 0, "done_at": []}
    start = time.monotonic()
    stop_at = start + seconds
    await asyncio.gather(*(simulated_agent(address, t, stop_at, stats, heartbeat_s, measure_s)
                           for t in tokens))
    stats["wall_s"] = time.monotonic() - start
    stats["start"] = start
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--measure-s", type=float, default=1.5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "load.db"
        tokens = prepare(db, args.agents, args.jobs)
        server, address = start_server(db, args=["--heartbeat-interval", str(args.heartbeat)])
        try:
            stats = asyncio.run(drive(address, tokens, args.seconds, args.heartbeat,
                                      args.measure_s))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        store = Store(db)
        counts = store.job_counts()
        accepted = store.db.execute("SELECT COUNT(*) FROM results WHERE accepted=1").fetchone()[0]
        stored = store.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        open_leases = store.db.execute(
            "SELECT COUNT(*) FROM leases WHERE state='active'").fetchone()[0]

    done_at = np.array(stats["done_at"]) - stats["start"]
    steady = done_at[(done_at >= 5) & (done_at <= args.seconds)]  # after everyone registered
    lease_ms = np.array(stats["lease_s"]) * 1000
    report = {
        "machine": machine_summary(), "agents": args.agents, "seconds": args.seconds,
        "measure_s": args.measure_s,
        "round_trips": stats["reported"], "round_trips_per_s": stats["reported"] / stats["wall_s"],
        "steady_round_trips_per_s": len(steady) / max(1e-9, args.seconds - 5),
        "lease_ms_p50": float(np.percentile(lease_ms, 50)),
        "lease_ms_p99": float(np.percentile(lease_ms, 99)),
        "lease_ms_max": float(lease_ms.max()),
        "loss_check": {"reports_sent": stats["reported"], "accepted_by_agents": stats["accepted"],
                       "results_in_db": stored, "accepted_in_db": accepted,
                       "jobs_done": counts.get("done", 0), "leases_left_active": open_leases,
                       "nothing_lost": stored == stats["reported"] == accepted ==
                       counts.get("done", 0)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
