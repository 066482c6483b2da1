"""Benchmark: the coordinator under many simulated agents on loopback.

Run: .venv/bin/python -m bench.coordinator_load [--agents 500] [--seconds 60]
     [--backend sqlite|postgres] [--coordinators N]

Real `ofa-coord serve` processes (one, or N sharing a PostgreSQL database) run on a fresh
SQLite file or on a throwaway PostgreSQL server (fsync on, synchronous_commit off: what
SQLite's WAL with synchronous=NORMAL risks, the last commits on a power loss, never damage).
This process plays N agents over the real protocol (asyncio gRPC), spread over the
coordinators: each registers with its own token, reads the model blob once, then loops
LeaseJobs -> fake measurement (50 samples; it "takes" `--measure-s` on average, uniform in
0.5x..1.5x, as a device spends ~1 s per job) -> ReportResult, and heartbeats every interval.
Reported: job round trips per second, the time LeaseJobs takes to hand out a queued job
(p50/p99), a loss check against the database, and the CPU seconds each part used (the
coordinators, PostgreSQL, this load generator): on a small machine, what limits the rate.

With `--hostile`, one more client in its own process sends the largest messages the server
accepts, in a loop: a Register with every field at its bound, Heartbeats with the most
lease ids and full telemetry, LeaseJobs for as many jobs as it may hold, ReadBlob of the
largest chunk, and reports of MAX_SAMPLES samples. The simulated agents' lease latency shows
whether one client can stall the others (the target: p99 <= 100 ms with 200 agents):

    .venv/bin/python -m bench.coordinator_load --agents 200 --seconds 60 --hostile
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import random
import resource
import signal
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import psutil

from agent.device import machine_summary
from coordinator.server.fleet import FleetSettings
from coordinator.server.limits import MAX_LABELS, MAX_LIST, MAX_SAMPLES, MAX_TEXT
from coordinator.services.jobs import BenchOptions, make_spec
from coordinator.services.local import start_server
from coordinator.state import BlobStore, Store, is_postgres_url
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc
from tests.postgres import ThrowawayPostgres

# Agents start over this many seconds, as a fleet does. (With about 1,500 or more agents
# connected, some Registers come back CANCELLED from gRPC, however they are spread over
# time or client processes: they are retried, as the agent does, and counted.)
RAMP_S = 3.0


def prepare(db: str, files: Path, agents: int, jobs: int) -> list[str]:
    store = Store(db)
    if is_postgres_url(db):
        store.set_files_root(files)
    model = bytes(random.Random(0).getrandbits(8) for _ in range(200_000))
    digest = BlobStore(store).put(model)
    spec = make_spec(
        digest, len(model), [("input", [1, 3, 64, 64])], BenchOptions(), lut_key="fake"
    ).SerializeToString()
    for start in range(0, jobs, 5000):
        store.enqueue([(spec, digest)] * min(5000, jobs - start), label="sim")
    tokens = [store.create_token(f"sim{i}") for i in range(agents + 1)]  # the last: hostile
    store.close()
    return tokens


async def simulated_agent(
    address: str, token: str, stop_at: float, stats: dict, heartbeat_s: float, measure_s: float
) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    await asyncio.sleep(random.uniform(0, RAMP_S))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.FleetStub(channel)
        while True:  # as the agent does, it registers again after a pause when refused
            try:
                reply = await stub.Register(
                    pb.RegisterRequest(labels=["sim"]), metadata=metadata, timeout=60
                )
                break
            except grpc.RpcError as exc:
                stats["register_refused"][exc.code().name] += 1
                await asyncio.sleep(random.uniform(0.5, 1.0))
        agent_id = reply.agent_id
        fetched = False
        next_beat = time.monotonic() + random.uniform(0, heartbeat_s)
        while time.monotonic() < stop_at:
            if time.monotonic() >= next_beat:
                await stub.Heartbeat(
                    pb.HeartbeatRequest(agent_id=agent_id), metadata=metadata, timeout=30
                )
                next_beat += heartbeat_s
            t0 = time.perf_counter()
            leased = await stub.LeaseJobs(
                pb.LeaseJobsRequest(agent_id=agent_id, max_jobs=1, wait_s=2),
                metadata=metadata,
                timeout=40,
            )
            waited = time.perf_counter() - t0
            for job in leased.jobs:
                stats["lease_s"].append(waited)
                stats["lease_at"].append(time.monotonic())
                if not fetched:
                    await stub.ReadBlob(
                        pb.ReadBlobRequest(digest=job.spec.model_digest, limit=2**20),
                        metadata=metadata,
                        timeout=30,
                    )
                    fetched = True
                await asyncio.sleep(random.uniform(0.5, 1.5) * measure_s)
                samples = np.random.default_rng().integers(900_000, 1_100_000, 50).tolist()
                result = pb.Result(
                    status=pb.RESULT_STATUS_OK, samples_ns=samples, stop_reason="precision"
                )
                outcome = await stub.ReportResult(
                    pb.ReportResultRequest(
                        agent_id=agent_id, job_id=job.job_id, lease_id=job.lease_id, result=result
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                stats["reported"] += 1
                stats["accepted"] += int(outcome.accepted)
                stats["done_at"].append(time.monotonic())


def largest_register() -> pb.RegisterRequest:
    """Every Register field at the bound the server accepts."""
    text = "x" * MAX_TEXT
    device = pb.DeviceInfo(
        temperature_sources=[text] * MAX_LIST,
        onnxruntime_providers=[text] * MAX_LIST,
        **{
            f.name: text
            for f in pb.DeviceInfo.DESCRIPTOR.fields
            if f.type == f.TYPE_STRING and not f.is_repeated
        },
    )
    return pb.RegisterRequest(
        labels=["sim"] + [f"{i:0>64}" for i in range(MAX_LABELS - 1)],
        device=device,
        agent_version="v" * 64,
        threads=4096,
    )


async def hostile_loop(address: str, token: str, stop_at: float, counts: dict) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    telemetry = pb.Telemetry(
        unix_time_ns=2**62,
        cpu_freq_mhz=1e6,
        temperature_c=1000,
        load_1m=1e6,
        cpu_percent=100,
        cpu_steal_percent=100,
        available_memory_bytes=2**62,
    )
    max_held = FleetSettings().max_jobs_per_lease
    # MAX_SAMPLES runs of 20 us: inside the default 30 s time cap
    samples = pb.Result(
        status=pb.RESULT_STATUS_OK,
        samples_ns=[20_000] * MAX_SAMPLES,
        stop_reason="time_cap",
        message="m" * 4000,
        before=telemetry,
        after=telemetry,
    )
    options = [
        ("grpc.max_send_message_length", 64 * 2**20),
        ("grpc.max_receive_message_length", 64 * 2**20),
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.FleetStub(channel)

        async def call(method: str, request) -> object:
            try:
                reply = await getattr(stub, method)(request, metadata=metadata, timeout=60)
                counts[method] = counts.get(method, 0) + 1
                return reply
            except grpc.RpcError as exc:
                key = f"{method} {exc.code().name}"
                counts[key] = counts.get(key, 0) + 1
                return None

        register = largest_register()
        reply = await call("Register", register)
        register.agent_id = reply.agent_id
        while time.monotonic() < stop_at:
            await call("Register", register)  # gives back what it held: a restart
            leased = await call(
                "LeaseJobs",
                pb.LeaseJobsRequest(agent_id=register.agent_id, max_jobs=2**31 - 1, wait_s=0),
            )
            jobs = list(leased.jobs) if leased else []
            await call(
                "Heartbeat",
                pb.HeartbeatRequest(
                    agent_id=register.agent_id,
                    telemetry=telemetry,
                    lease_ids=[j.lease_id for j in jobs] + ["f" * 64] * (max_held - len(jobs)),
                ),
            )
            for job in jobs:
                await call(
                    "ReadBlob", pb.ReadBlobRequest(digest=job.spec.model_digest, limit=2**62)
                )
                await call(
                    "ReportResult",
                    pb.ReportResultRequest(
                        agent_id=register.agent_id,
                        job_id=job.job_id,
                        lease_id=job.lease_id,
                        result=samples,
                    ),
                )


def hostile_process(address: str, token: str, stop_at_unix: float, queue) -> None:
    """The hostile client in its own process: building its messages must not slow the
    simulated agents' event loop, only the server can."""
    counts: dict = {}
    stop_at = time.monotonic() + (stop_at_unix - time.time())
    asyncio.run(hostile_loop(address, token, stop_at, counts))
    queue.put(counts)


async def drive(
    addresses: list[str], tokens: list[str], seconds: float, heartbeat_s: float, measure_s: float
) -> dict:
    stats = {
        "lease_s": [],
        "lease_at": [],
        "reported": 0,
        "accepted": 0,
        "done_at": [],
        "register_refused": collections.Counter(),
    }
    start = time.monotonic()
    stop_at = start + seconds
    await asyncio.gather(
        *(
            simulated_agent(
                addresses[i % len(addresses)], t, stop_at, stats, heartbeat_s, measure_s
            )
            for i, t in enumerate(tokens)
        )
    )
    stats["wall_s"] = time.monotonic() - start
    stats["start"] = start
    return stats


class CpuMeter:
    """CPU seconds used from now on by the coordinators, PostgreSQL's processes and this
    load generator: with 2 cores and a load generator in Python, what saturates first."""

    def __init__(self, servers: list, postgres: ThrowawayPostgres | None) -> None:
        self.parts = {
            "coordinators": [psutil.Process(server.pid) for server in servers],
            "load_generator": [psutil.Process(os.getpid())],
            "postgres": [],
        }
        self.postmaster = psutil.Process(postgres.server_pid()) if postgres else None
        self._find_postgres()
        self.start = self._now()

    def _find_postgres(self) -> None:
        """The postmaster and its backends (forked per connection, so found again)."""
        if self.postmaster is not None:
            self.parts["postgres"] = [self.postmaster, *self.postmaster.children(recursive=True)]

    def _now(self) -> dict[str, float]:
        return {name: _cpu(processes) for name, processes in self.parts.items()}

    def used(self) -> dict[str, float]:
        self._find_postgres()
        now = self._now()
        return {name: round(now[name] - self.start.get(name, 0.0), 1) for name in now}


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def raise_open_files_limit() -> None:
    """Every simulated agent holds a socket, and so does the server for each: 2,000 agents
    need more than the usual soft limit of 1,024 descriptors (the servers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--measure-s", type=float, default=1.5)
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="Add one client sending the largest accepted messages in a loop.",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--logs", type=Path, help="Keep each coordinator's log in this folder.")
    parser.add_argument(
        "--coordinators", type=int, default=1, help="Coordinators sharing the database."
    )
    args = parser.parse_args()
    if args.coordinators > 1 and args.backend != "postgres":
        parser.error("--coordinators: several need --backend postgres")
    raise_open_files_limit()

    postgres = ThrowawayPostgres(fsync=True) if args.backend == "postgres" else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = postgres.new_database() if postgres else str(Path(tmp) / "load.db")
            files = Path(tmp) / "files"
            *tokens, hostile_token = prepare(db, files, args.agents, args.jobs)
            serve_args = ["--heartbeat-interval", str(args.heartbeat)]
            if postgres:
                serve_args += ["--files", str(files)]
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
            servers = [
                start_server(
                    db,
                    args=serve_args,
                    log=open(args.logs / f"coordinator-{n}.log", "ab") if args.logs else None,
                )
                for n in range(args.coordinators)
            ]
            addresses = [address for _, address in servers]
            address = addresses[0]
            cpu = CpuMeter([server for server, _ in servers], postgres)
            hostile, queue = None, multiprocessing.Queue()
            if args.hostile:
                hostile = multiprocessing.Process(
                    target=hostile_process,
                    args=(address, hostile_token, time.time() + args.seconds, queue),
                )
                hostile.start()
            try:
                stats = asyncio.run(
                    drive(addresses, tokens, args.seconds, args.heartbeat, args.measure_s)
                )
                cpu_seconds = cpu.used()
                hostile_counts = queue.get(timeout=120) if hostile else None
            finally:
                if hostile is not None:
                    hostile.join(timeout=60)
                for server, _ in servers:
                    server.send_signal(signal.SIGTERM)
                for server, _ in servers:
                    server.wait(timeout=60)
            store = Store(db)
            counts = store.job_counts()
            results = store.result_counts()
            accepted, stored = results["accepted"], results["stored"]
            open_leases = sum(store.active_leases(agent["id"]) for agent in store.list_agents())
            hostile_agent = next(
                (
                    token["agent_id"]
                    for token in store.list_tokens()
                    if token["name"] == f"sim{args.agents}"
                ),
                None,
            )
            hostile_results = (
                store.result_counts(hostile_agent)["stored"] if hostile_agent is not None else 0
            )
            store.close()
    finally:  # a failed run leaves no server behind
        if postgres:
            postgres.stop()

    done_at = np.array(stats["done_at"]) - stats["start"]
    steady = done_at[(done_at >= 5) & (done_at <= args.seconds)]  # after everyone registered
    lease_ms = np.array(stats["lease_s"]) * 1000
    lease_at = np.array(stats["lease_at"]) - stats["start"]
    steady_ms = lease_ms[lease_at >= 5]  # after the registrations and first blob reads
    report = {
        "machine": machine_summary(),
        "backend": args.backend,
        "coordinators": args.coordinators,
        "agents": args.agents,
        "seconds": args.seconds,
        "measure_s": args.measure_s,
        "round_trips": stats["reported"],
        "round_trips_per_s": stats["reported"] / stats["wall_s"],
        "steady_round_trips_per_s": len(steady) / max(1e-9, args.seconds - 5),
        "lease_ms_p50": float(np.percentile(lease_ms, 50)),
        "lease_ms_p99": float(np.percentile(lease_ms, 99)),
        "lease_ms_max": float(lease_ms.max()),
        "steady_lease_ms_p50": float(np.percentile(steady_ms, 50)),
        "steady_lease_ms_p99": float(np.percentile(steady_ms, 99)),
        "cpu_seconds": cpu_seconds,
        "registers_refused": dict(stats["register_refused"]),
        "hostile_calls": hostile_counts,
        "loss_check": {
            "reports_sent": stats["reported"] + hostile_results,
            "accepted_by_agents": stats["accepted"],
            "results_in_db": stored,
            "accepted_in_db": accepted,
            "jobs_done": counts.get("done", 0),
            "leases_left_active": open_leases,
            # a report that arrives after its lease ran out, for a job another agent has
            # finished since, is stored and not accepted: a duplicate, not a loss
            "duplicates": stored - accepted,
            "nothing_lost": stored == stats["reported"] + hostile_results
            and accepted == counts.get("done", 0)
            and open_leases == 0,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
