"""Measurements disturbed by other work are detected, reported as such and measured again:
real busy-loop processes compete with a real agent's onnxruntime sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import resources

import numpy as np
import pytest

from agent.disturbance import DisturbanceLimits, Monitor
from agent.measure import BenchSettings, measure
from coordinator.services.jobs import BenchOptions
from tests.fleet import Fleet, small_models, wait_for

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
    with pytest.raises(ValueError, match="^cpu_wait: expected a finite number > 0"):
        DisturbanceLimits(cpu_wait=float("nan"))


def test_a_campaign_under_load_is_measured_again_once_the_load_is_gone(tmp_path, hogs):
    """Hogs on every core while a 2-thread agent starts measuring: the disturbed results are
    detected and stored as evidence only; each such job is measured again after the hogs stop,
    and every accepted result is clean and close to a quiet measurement of its model."""
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server(extra=("--remeasure-cooldown", "0.5"))
        models = [("reference", REFERENCE), *small_models(3, r=160)[1:]]
        options = BenchOptions(
            threads=2, warmup_runs=5, min_runs=30, min_time_s=0.3, max_time_s=2.0
        )
        jobs = fleet.enqueue(models, options=options, max_disturbed=20)
        hogs.start()
        fleet.start_agent("busy", extra=("--threads", "2"), disturbance_check=True)
        wait_for(
            lambda: (
                sum(r["status"] == "disturbed" for j in jobs for r in fleet.store.results(j)) >= 2
            ),
            120,
            "two disturbed results",
        )
        hogs.stop()
        quiet_from = time.time()
        fleet.wait_done(jobs, timeout=180)
        results = {j: fleet.store.results(j) for j in jobs}
        assert all(fleet.store.job(j)["state"] == "done" for j in jobs)
        disturbed = {
            j for j, rows in results.items() if any(r["status"] == "disturbed" for r in rows)
        }
        assert disturbed, "the load went unnoticed"
        for job_id in disturbed:
            accepted = [r for r in results[job_id] if r["accepted"]]
            assert len(accepted) == 1 and accepted[0]["received_at"] > quiet_from
        agent_log = fleet.agent_log("busy")
    finally:
        fleet.close()
    for (key, model), job_id in zip(models, jobs, strict=True):
        (accepted,) = [r for r in results[job_id] if r["accepted"]]
        quiet = _quiet_median_ms(model)
        assert abs(accepted["median_ms"] / quiet - 1) <= 0.10, (key, accepted["median_ms"], quiet)
    assert "disturbed: cpu_wait" in agent_log


def _quiet_median_ms(model: bytes) -> float:
    """The model's median over repeated clean 2-thread measurements in this process."""
    medians = []
    for _ in range(20):
        measurement = measure(model, BenchSettings(threads=2, min_runs=30, min_time_s=0.3))
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
