"""Measurements disturbed by other work are detected, reported as such and measured again:
real busy-loop processes compete with a real agent's onnxruntime sessions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from importlib import resources

import numpy as np
import pytest

from agent.disturbance import DisturbanceLimits, Monitor
from agent.measure import BenchSettings, measure
from agent.pinning import claimed_cores
from coordinator.services.jobs import BenchOptions
from ofa.config import SubnetConfig
from ofa.nn.export import export_subnet
from tests.fleet import Fleet, small_models, wait_for
from tests.models import randomized_supernet

# Load on purpose, and quiet measurements compared across processes: nothing else may run.
pytestmark = pytest.mark.serial
CORES = os.cpu_count() or 1
REFERENCE = resources.files("agent").joinpath("data/reference.onnx").read_bytes()


class Hogs:
    """One busy-loop process per core: every measuring thread must wait for a CPU."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        self.processes = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(CORES)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        self.processes = []


@pytest.fixture
def hogs():
    h = Hogs()
    yield h
    h.stop()


def test_contention_is_judged_disturbed_with_its_evidence(hogs):
    hogs.start()
    time.sleep(0.2)  # the hogs are running
    settings = BenchSettings(threads=CORES, min_time_s=0.5, max_time_s=1.0, target_precision=0.5)
    evidence = measure(REFERENCE, settings).evidence
    assert evidence.disturbed
    assert evidence.cpu_wait is not None and evidence.cpu_wait > DisturbanceLimits().cpu_wait
    assert evidence.cpu_wait_peak is not None and evidence.cpu_wait_peak >= evidence.cpu_wait * 0.5
    assert any(reason.startswith("cpu_wait ") for reason in evidence.reasons)
    assert evidence.others_cpu is not None and evidence.others_cpu > 0.5


def test_judgment_follows_the_limits():
    """The same evidence is clean or disturbed by the limits alone (no load needed)."""
    monitor = Monitor(threads=1, limits=DisturbanceLimits(cpu_wait=1e6, steal=1e6))
    monitor.start()
    evidence = monitor.finish([1.0, 1.0, 1.0])
    assert not evidence.disturbed and evidence.trend == 0 and evidence.block_spread == 0
    monitor.start()
    assert not monitor.finish([1.0] * 6 + [1.2] * 3).disturbed
    for medians in ([1.0] * 6 + [2.0] * 3, [2.0] * 6 + [1.0] * 3):  # load began, or ended
        monitor.start()
        evidence = monitor.finish(medians)
        assert any(reason.startswith("trend ") for reason in evidence.reasons), evidence
    monitor.start()  # too few blocks to judge: one would be compared with one
    assert not monitor.finish([1.0, 1.0, 2.0]).disturbed
    with pytest.raises(ValueError, match="^cpu_wait: expected a finite number > 0"):
        DisturbanceLimits(cpu_wait=float("nan"))


def test_a_load_that_starts_mid_job_shows_in_the_jobs_own_trend(hogs):
    """The counters are switched off here: the job's own runs alone must show the load. The
    model runs for milliseconds: a 0.3 ms one mostly runs between the scheduler's switches,
    so under contention its median hardly moved (+3% once; CPU wait is the signal there)."""
    blind = DisturbanceLimits(cpu_wait=1e6, steal=1e6, others_cpu=1e6, frequency_drop=1e6)
    model = export_subnet(randomized_supernet(1.0, seed=1), SubnetConfig.largest(r=128)).onnx
    # the whole 2 s: no precision is reached that fine
    settings = BenchSettings(threads=CORES, min_time_s=2, max_time_s=2, target_precision=1e-9)
    quiet = measure(model, settings, limits=blind).evidence
    assert not quiet.disturbed, quiet.reasons
    later = threading.Timer(0.8, hogs.start)
    later.start()
    try:
        loaded = measure(model, settings, limits=blind).evidence
    finally:
        later.join()
    assert loaded.trend > DisturbanceLimits().trend, loaded
    assert any(reason.startswith("trend ") for reason in loaded.reasons)


# How much slower than a quiet measurement of the same model in another process a clean
# result may be. Clean 2-thread medians of one 3-7 ms subnet moved by up to 27% between
# processes a few seconds apart on the 2-vCPU VMs this suite runs on (+-7 to +-14% around
# their median), and one measured right after the hogs stopped was 31% slow, with no CPU
# wait or steal to show for it: what the host does with the VM's cores is invisible
# inside. A result taken beside the hogs is 2-5x the quiet one. Only slower counts: load
# never makes a model faster, and the quiet measurement itself was once 60% slower than
# the agent's clean, pinned one (2026-12-02, AMD EPYC).
# bench/disturbance.py and bench/noise_floor.py report the distributions.
CLEAN_TOLERANCE = 0.35


def test_a_campaign_under_load_is_measured_again_once_the_load_is_gone(tmp_path, hogs):
    """Hogs on every core while a 2-thread agent starts measuring: the disturbed results are
    detected and stored as evidence only; each such job is measured again after the hogs stop,
    and every accepted result is clean and not slower than a quiet measurement of its model
    (beyond the noise between processes)."""
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server(extra=("--remeasure-cooldown", "2"))
        models = subnets()
        options = BenchOptions(
            threads=2, warmup_runs=5, min_runs=20, min_time_s=0.2, max_time_s=1.0
        )
        jobs = fleet.enqueue(models, options=options, repeats=2, max_disturbed=20)
        hogs.start()
        fleet.start_agent("busy", extra=("--threads", "2"), disturbance_check=True)
        wait_for(lambda: len(_disturbed(fleet, jobs)) >= 2, 120, "two disturbed results")
        hogs.stop()
        quiet_from = time.time()
        fleet.wait_done(jobs, timeout=120)
        results = {j: fleet.store.results(j) for j in jobs}
        digests = {j: fleet.store.job(j)["model_digest"] for j in jobs}
        disturbed = _disturbed(fleet, jobs)
        agent_log = fleet.agent_log("busy")
    finally:
        fleet.close()
    assert all(any(r["accepted"] for r in rows) for rows in results.values())
    assert disturbed, "the load went unnoticed"
    for job_id in disturbed:
        (accepted,) = [r for r in results[job_id] if r["accepted"]]
        assert accepted["received_at"] > quiet_from  # measured again after the hogs stopped
    for name, model in models:
        quiet = _quiet_median_ms(model)
        for job_id in jobs:
            (accepted,) = [r for r in results[job_id] if r["accepted"]]
            if digests[job_id] == _digest(model):
                evidence = json.loads(accepted["evidence"])
                assert "reasons" not in evidence  # clean: no reason to doubt it
                assert evidence["cpu_wait"] <= DisturbanceLimits().cpu_wait
                assert accepted["median_ms"] / quiet - 1 <= CLEAN_TOLERANCE, (
                    name,
                    accepted["median_ms"],
                    quiet,
                )
    assert "disturbed: cpu_wait" in agent_log


def subnets() -> list[tuple[str, bytes]]:
    """Two subnets of 3-7 ms with 2 threads, like typical subnet jobs. (A 0.6 ms model's
    clean medians moved by up to 36% between processes here: too noisy to judge against.)"""
    from ofa.config import SubnetConfig
    from ofa.nn.export import export_subnet
    from tests.models import randomized_supernet

    supernet = randomized_supernet(1.0, seed=0)
    configs = {
        "smallest@224": SubnetConfig.smallest(r=224),
        "largest@128": SubnetConfig.largest(r=128),
    }
    return [(name, export_subnet(supernet, config).onnx) for name, config in configs.items()]


def _digest(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()


def _disturbed(fleet: Fleet, jobs: list[str]) -> set[str]:
    """The jobs with at least one disturbed result."""
    return {j for j in jobs if any(r["status"] == "disturbed" for r in fleet.store.results(j))}


def _quiet_median_ms(model: bytes) -> float:
    """The model's median over three clean 2-thread measurements in this process."""
    medians = []
    for _ in range(20):
        measurement = measure(model, BenchSettings(threads=2, min_runs=20, min_time_s=0.2))
        if not measurement.evidence.disturbed:
            medians.append(measurement.stats()["median_ms"])
        if len(medians) == 3:
            return float(np.median(medians))
    raise AssertionError("no quiet measurement: the machine is busy")


def test_pinning_and_cooldown_are_recorded_and_can_be_switched_off(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server()
        fleet.start_agent("pinned", labels=("pinned",), disturbance_check=True)
        fleet.start_agent(
            "free", labels=("free",), extra=("--no-pin", "--no-cooldown", "--no-disturbance-check")
        )
        jobs = {
            label: fleet.enqueue(small_models(1), label=label, max_disturbed=100)
            for label in ("pinned", "free")
        }
        fleet.wait_done([j for ids in jobs.values() for j in ids], timeout=120)
        conditions = {
            label: json.loads(fleet.store.results(ids[0])[-1]["conditions"])
            for label, ids in jobs.items()
        }
    finally:
        fleet.close()
    assert conditions["pinned"]["pinned_cores"] == [sorted(os.sched_getaffinity(0))[-1]]
    assert conditions["pinned"]["cooldown_s"] >= 0
    assert conditions["free"] == {"pinned_cores": [], "cooldown_s": 0.0}


def test_agents_of_one_host_claim_different_cores():
    """Two measurements at once (two agents of one host) never get one core; with every core
    held, a third is not pinned at all rather than pinned onto a busy core."""
    allowed = sorted(os.sched_getaffinity(0))
    with claimed_cores(1) as first, claimed_cores(1) as second:
        assert first == (allowed[-1],)
        assert second == ((allowed[-2],) if len(allowed) > 1 else ())
    with claimed_cores(len(allowed)) as every, claimed_cores(1) as none:
        assert every == tuple(allowed) and none == ()
    with claimed_cores(1) as again:
        assert again == (allowed[-1],)  # released with the blocks above
