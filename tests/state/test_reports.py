"""The state's contract for reports: statistics from the raw samples, idempotence by lease,
exactly one accepted OK result per job, late results, releases and failures."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from coordinator.state import Forbidden, NotFound
from tests.state.helpers import (
    HOUR,
    SPEC,
    add_agent,
    age_leases,
    agent_row,
    disturbed,
    end_cooldowns,
    enqueue,
    expire_all,
    lease,
    lease_row,
    ok,
)


def test_ok_report_completes_the_job_with_stats_from_raw_samples(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    samples = [5_123_457, 4_999_999, 5_500_001, 7_000_003, 5_000_000, 4_800_000]
    drift = {"drift": 0.02, "reference_ms": 1.5}
    outcome = store.report(
        "a1",
        job_id,
        held.lease_id,
        "ok",
        ok(samples, drift=drift, stop_reason="min_runs", warmup_runs=3),
    )
    assert (outcome.accepted, outcome.duplicate, outcome.late) == (True, False, False)
    job = store.job(job_id)
    [result] = store.results(job_id)
    assert job["state"] == "done" and job["finished_at"] is not None and job["error"] is None
    assert job["accepted_result"] == result["id"]
    assert agent_row(store, "a1")["jobs_done"] == 1
    assert lease_row(store, held.lease_id)["state"] == "reported"
    ms = np.asarray(samples) / 1e6
    assert result["n"] == len(samples)
    assert result["median_ms"] == pytest.approx(float(np.median(samples)) / 1e6, rel=1e-12)
    assert result["mean_ms"] == pytest.approx(float(ms.mean()), rel=1e-12)
    assert result["p90_ms"] == pytest.approx(float(np.percentile(ms, 90)), rel=1e-12)
    assert result["std_ms"] == pytest.approx(float(ms.std(ddof=1)), rel=1e-12)
    assert (result["accepted"], result["late"], result["status"]) == (1, 0, "ok")
    assert (result["stop_reason"], result["warmup_runs"]) == ("min_runs", 3)
    assert result["drift"] == pytest.approx(0.02)


def test_raw_samples_round_trip_exactly(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    samples = [1, 0, 2**62 + 7, 123_456_789_012, 999_999_999_999_999_999, 3]
    store.report("a1", job_id, held.lease_id, "ok", ok(samples))
    got = store.results(job_id)[0]["samples_ns"]
    assert got == samples and all(type(v) is int for v in got)


def test_duplicate_report_is_idempotent(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    first = store.report("a1", job_id, held.lease_id, "ok", ok())
    again = store.report("a1", job_id, held.lease_id, "ok", ok([9, 9, 9]))
    assert again.duplicate and not first.duplicate
    assert (again.accepted, again.late) == (first.accepted, first.late)
    [result] = store.results(job_id)
    assert result["samples_ns"] == ok()["samples_ns"]
    assert agent_row(store, "a1")["jobs_done"] == 1


def test_late_report_is_accepted_while_the_job_is_not_done(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store, lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    assert store.job(job_id)["state"] == "queued"
    outcome = store.report("a1", job_id, held.lease_id, "ok", ok())
    assert (outcome.accepted, outcome.late) == (True, True)
    assert store.job(job_id)["state"] == "done"
    assert store.results(job_id)[0]["late"] == 1
    assert lease(store) == []  # no longer queued


def test_late_report_for_a_done_job_is_stored_but_not_accepted(store, digest):
    add_agent(store, "slow")
    add_agent(store, "fast")
    job_id = enqueue(store, digest)[0]
    stale = lease(store, "slow", lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    fresh = lease(store, "fast")[0]
    assert store.report("fast", job_id, fresh.lease_id, "ok", ok()).accepted
    outcome = store.report("slow", job_id, stale.lease_id, "ok", ok([7, 8, 9]))
    assert (outcome.accepted, outcome.duplicate, outcome.late) == (False, False, True)
    results = store.results(job_id)
    assert [(r["agent_id"], r["accepted"], r["late"]) for r in results] == [
        ("fast", 1, 0),
        ("slow", 0, 1),
    ]
    assert store.job(job_id)["accepted_result"] == results[0]["id"]
    assert agent_row(store, "slow")["jobs_done"] == 0


def test_exactly_one_ok_result_is_accepted_per_job(store, digest):
    """The stale lease reports first and wins; the current lease's report is refused."""
    add_agent(store, "a1")
    add_agent(store, "a2")
    job_id = enqueue(store, digest)[0]
    first = lease(store, "a1", lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    second = lease(store, "a2")[0]
    assert store.report("a1", job_id, first.lease_id, "ok", ok()).accepted
    assert lease_row(store, second.lease_id)["state"] == "superseded"
    assert store.heartbeat("a2", [second.lease_id], {}, HOUR) == [second.lease_id]
    outcome = store.report("a2", job_id, second.lease_id, "ok", ok())
    assert not outcome.accepted and outcome.late  # its lease was no longer active
    accepted = [r for r in store.results(job_id) if r["accepted"] and r["status"] == "ok"]
    assert len(accepted) == 1 and accepted[0]["agent_id"] == "a1"
    assert store.job(job_id)["accepted_result"] == accepted[0]["id"]


def test_report_checks_agent_and_lease(store, digest):
    add_agent(store, "a1")
    add_agent(store, "a2")
    job_a, job_b = enqueue(store, digest, 2)
    held = lease(store, "a1")[0]
    with pytest.raises(Forbidden):
        store.report("a2", job_a, held.lease_id, "ok", ok())
    with pytest.raises(NotFound, match="lease_id"):
        store.report("a1", job_a, "no-such-lease", "ok", ok())
    with pytest.raises(NotFound):
        store.report("a1", job_b, held.lease_id, "ok", ok())  # lease of another job
    assert store.results(job_a) == [] and store.job(job_a)["state"] == "leased"


def test_released_requeues_without_consuming_an_attempt(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=1)[0]
    held = lease(store)[0]
    outcome = store.report("a1", job_id, held.lease_id, "released", {"message": "stopping"})
    assert not outcome.accepted
    job = store.job(job_id)
    assert (job["state"], job["attempts"]) == ("queued", 0)
    assert lease_row(store, held.lease_id)["state"] == "released"
    again = lease(store)[0]  # max_attempts=1 and still leasable
    assert again.attempt == 1
    assert store.report("a1", job_id, again.lease_id, "ok", ok()).accepted


def test_failed_requeues_until_max_attempts_then_fails(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=2)[0]
    first = lease(store)[0]
    store.report("a1", job_id, first.lease_id, "failed", {"message": "boom one"})
    job = store.job(job_id)
    assert job["state"] == "queued" and "boom one" in job["error"]
    second = lease(store)[0]
    assert second.attempt == 2
    store.report("a1", job_id, second.lease_id, "failed", {"message": "boom two"})
    job = store.job(job_id)
    assert job["state"] == "failed" and job["finished_at"] is not None
    assert "boom two" in job["error"] and "attempt 2 of 2" in job["error"]
    assert lease(store) == []
    assert [r["message"] for r in store.results(job_id)] == ["boom one", "boom two"]


def test_a_late_failure_neither_counts_nor_leaves_two_accepted_rows(store, digest):
    """A FAILED report from an expired lease is stored, flagged late, not accepted, and does
    not touch the job; the next lease's OK is then the job's only accepted row."""
    add_agent(store, "a1")
    add_agent(store, "a2")
    (job_id,) = enqueue(store, digest)
    (first,) = lease(store, "a1")
    expire_all(store)
    (second,) = lease(store, "a2")
    failed = store.report("a1", job_id, first.lease_id, "failed", {"message": "boom"})
    assert (failed.accepted, failed.late) == (False, True)
    assert store.job(job_id)["state"] == "leased"
    assert store.report("a2", job_id, second.lease_id, "ok", ok()).accepted
    assert [(r["status"], r["accepted"]) for r in store.results(job_id)] == [
        ("failed", 0),
        ("ok", 1),
    ]


def test_a_failure_reported_after_expiry_but_before_the_sweep_is_not_accepted(store, digest):
    """The lease is overdue but still `active` (no sweep yet): the failure is late, not
    accepted, and the job is requeued as the sweep would have done."""
    add_agent(store, "a1")
    (job_id,) = enqueue(store, digest)
    (first,) = lease(store, "a1")
    age_leases(store, 2 * HOUR)  # no sweep
    failed = store.report("a1", job_id, first.lease_id, "failed", {"message": "boom"})
    assert (failed.accepted, failed.late) == (False, True)
    assert store.job(job_id)["state"] == "queued"
    (again,) = lease(store, "a1")
    assert store.report("a1", job_id, again.lease_id, "ok", ok()).accepted


def test_result_timings_are_the_accepted_ok_results_in_lease_order(store, digest):
    """A late OK (not accepted) and an accepted failure have nothing to time; each accepted
    OK comes with its own lease's issue time and what the agent reported spending."""
    add_agent(store, "slow")
    add_agent(store, "fast")
    timed, failing = enqueue(store, digest, n=2)
    stale = lease(store, "slow", lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    fresh = lease(store, "fast")[0]
    store.report("fast", timed, fresh.lease_id, "ok", ok([4, 5], warmup_ns=7, session_create_ns=9))
    store.report("slow", timed, stale.lease_id, "ok", ok([8, 8]))  # late: not accepted
    held = lease(store, "fast")[0]
    assert held.job_id == failing
    store.report("fast", failing, held.lease_id, "failed", {"message": "boom"})
    [timing] = store.result_timings()
    assert timing.issued_at == lease_row(store, fresh.lease_id)["issued_at"]
    assert timing.received_at >= timing.issued_at
    assert timing.samples_ns.tolist() == [4, 5]
    assert (timing.warmup_ns, timing.session_create_ns) == (7, 9)


def test_result_timings_follow_the_leases_not_the_reports(store, digest):
    add_agent(store)
    jobs = enqueue(store, digest, n=3)
    held = [lease(store)[0] for _ in jobs]
    for i, leased in reversed(list(enumerate(held))):
        store.report("a1", leased.job_id, leased.lease_id, "ok", ok([i + 1]))
    timings = store.result_timings()
    issued = [lease_row(store, leased.lease_id)["issued_at"] for leased in held]
    assert [t.issued_at for t in timings] == sorted(issued)
    assert {(t.issued_at, int(t.samples_ns[0])) for t in timings} == {
        (at, i + 1) for i, at in enumerate(issued)
    }


def test_disturbed_is_kept_as_evidence_and_requeued_after_a_doubling_cooldown(store, digest):
    """A disturbed result is stored with its evidence, never accepted, and costs no attempt;
    the job waits out a cooldown (100 s, then 200 s) before anyone may lease it again."""
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=1)[0]
    for n, cooldown in ((1, 100), (2, 200)):
        held = lease(store)[0]
        before = time.time()
        outcome = store.report("a1", job_id, held.lease_id, "disturbed", disturbed(), 100.0)
        assert not outcome.accepted
        job = store.job(job_id)
        assert (job["state"], job["attempts"], job["disturbed"]) == ("queued", 0, n)
        assert before + cooldown <= job["not_before"] <= time.time() + cooldown
        assert "cpu_wait 0.4" in job["error"] and f"({n} of 4)" in job["error"]
        assert lease(store) == []  # cooling down
        end_cooldowns(store)
        assert store.sweep(offline_after_s=HOUR)["cooled"] == 1
    final = lease(store)[0]
    assert final.attempt == 1  # max_attempts=1: the disturbed leases were not counted
    assert store.report("a1", job_id, final.lease_id, "ok", ok()).accepted
    rows = store.results(job_id)
    assert [(r["status"], r["accepted"]) for r in rows] == [
        ("disturbed", 0),
        ("disturbed", 0),
        ("ok", 1),
    ]
    assert json.loads(rows[0]["evidence"])["reasons"] == ["cpu_wait 0.4 > 0.05"]
    assert rows[2]["evidence"] is None


def test_a_job_disturbed_max_disturbed_times_ends_disturbed(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_disturbed=2)[0]
    for reason in ("steal 0.2 > 0.05", "cpu_wait 0.9 > 0.05"):
        held = lease(store)[0]
        store.report("a1", job_id, held.lease_id, "disturbed", disturbed(reasons=[reason]))
    job = store.job(job_id)
    assert job["state"] == "disturbed" and job["finished_at"] is not None
    assert "(2 of 2)" in job["error"] and "cpu_wait 0.9" in job["error"]
    assert lease(store) == []
    assert store.job_counts() == {"disturbed": 1}


def test_report_refuses_an_unknown_status_and_a_bad_cooldown(store, digest):
    add_agent(store)
    (job_id,) = enqueue(store, digest)
    held = lease(store)[0]
    with pytest.raises(ValueError, match="^status: expected one of ok, failed"):
        store.report("a1", job_id, held.lease_id, "fine", ok())
    with pytest.raises(ValueError, match="^cooldown_s:"):
        store.report("a1", job_id, held.lease_id, "disturbed", disturbed(), math.nan)
    assert store.results(job_id) == []
