"""The state's contract: queueing jobs, leasing them in order to the agents they target,
heartbeats renewing leases, expiry and silent agents requeueing them (or failing the job
after max_attempts), giving leases back and cancelling jobs."""

from __future__ import annotations

import time

import pytest

from coordinator.state import NotFound
from tests.state.helpers import (
    HOUR,
    SPEC,
    add_agent,
    age_heartbeats,
    agent_row,
    enqueue,
    expire_all,
    lease,
    lease_row,
    ok,
)


def test_enqueue_needs_a_stored_blob(store, digest):
    """An unknown digest is refused and nothing of the batch is queued."""
    with pytest.raises(NotFound, match="model_digest"):
        store.enqueue([(SPEC, digest), (SPEC, "0" * 64)], label="cpu")
    assert store.job_counts() == {}


def test_enqueue_validates_target_and_attempts(store, digest):
    with pytest.raises(ValueError, match="^target:"):
        store.enqueue([(SPEC, digest)], label="cpu", agent_id="a1")
    with pytest.raises(ValueError, match="^target:"):
        store.enqueue([(SPEC, digest)])
    with pytest.raises(ValueError, match="^max_attempts:"):
        store.enqueue([(SPEC, digest)], label="cpu", max_attempts=0)
    assert len(store.enqueue([(SPEC, digest)], label="cpu", max_attempts=1)) == 1


def test_jobs_are_leased_in_enqueue_order(store, digest):
    add_agent(store)
    first = enqueue(store, digest, 3)
    second = enqueue(store, digest, 2)
    seqs = [store.job(j)["seq"] for j in first + second]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    got = lease(store, max_jobs=2) + lease(store, max_jobs=10)
    assert [j.job_id for j in got] == first + second
    assert [j.spec for j in got[:3]] == [SPEC + bytes([i]) for i in range(3)]
    assert lease(store, max_jobs=10) == []


def test_higher_priority_jobs_go_first(store, digest):
    add_agent(store)
    low = enqueue(store, digest)
    high = store.enqueue([(SPEC, digest)], label="cpu", priority=5)
    assert [j.job_id for j in lease(store, max_jobs=2)] == high + low


def test_max_jobs_is_respected(store, digest):
    add_agent(store)
    enqueue(store, digest, 5)
    assert len(lease(store, max_jobs=2)) == 2
    assert store.job_counts() == {"leased": 2, "queued": 3}


def test_jobs_go_only_to_matching_labels_or_the_target_agent(store, digest):
    add_agent(store, "cpu-box", labels=("cpu",))
    add_agent(store, "gpu-box", labels=("gpu", "cuda"))
    for_gpu = enqueue(store, digest, label="cuda")
    for_cpu_box = enqueue(store, digest, agent_id="cpu-box")
    for_nobody = enqueue(store, digest, label="tpu")
    assert [j.job_id for j in lease(store, "cpu-box", 10)] == for_cpu_box
    assert [j.job_id for j in lease(store, "gpu-box", 10)] == for_gpu
    assert store.job(for_nobody[0])["state"] == "queued"


def test_attempt_numbers_increase_per_lease(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    attempts = []
    for _ in range(3):
        held = lease(store)[0]
        assert held.job_id == job_id
        attempts.append(held.attempt)
        assert lease_row(store, held.lease_id)["attempt"] == held.attempt
        expire_all(store)
    assert attempts == [1, 2, 3]
    assert store.job(job_id)["attempts"] == 3


def test_sweep_requeues_an_overdue_lease(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store, lease_seconds=-1)[0]  # already overdue
    assert held.expires_at < time.time()
    assert store.sweep(offline_after_s=HOUR) == {
        "expired": 1,
        "offline": 0,
        "requeued_from_offline": 0,
        "cooled": 0,
    }
    assert lease_row(store, held.lease_id)["state"] == "expired"
    job = store.job(job_id)
    assert job["state"] == "queued" and "expired" in job["error"]
    assert lease(store)[0].attempt == held.attempt + 1
    assert store.sweep(offline_after_s=HOUR)["expired"] == 0  # the new lease is not overdue


def test_expiry_after_max_attempts_fails_the_job(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=2)[0]
    for _ in range(2):
        assert lease(store, lease_seconds=-1)
        store.sweep(offline_after_s=HOUR)
    job = store.job(job_id)
    assert job["state"] == "failed" and job["finished_at"] is not None
    assert "attempt 2 of 2" in job["error"] and "expired" in job["error"]
    assert lease(store) == []


def test_heartbeat_renews_listed_leases_and_returns_lost_ones(store, digest):
    add_agent(store, "a1")
    add_agent(store, "a2")
    enqueue(store, digest, 3)
    mine = lease(store, "a1", lease_seconds=10)[0]
    done = lease(store, "a1", lease_seconds=10)[0]
    store.report("a1", done.job_id, done.lease_id, "ok", ok())
    theirs = lease(store, "a2", lease_seconds=10)[0]
    before = lease_row(store, mine.lease_id)["expires_at"]

    lost = store.heartbeat(
        "a1",
        [mine.lease_id, done.lease_id, theirs.lease_id, "nope"],
        {"temp_c": 50},
        lease_seconds=HOUR,
    )
    assert lost == [done.lease_id, theirs.lease_id, "nope"]
    assert lease_row(store, mine.lease_id)["expires_at"] >= before + HOUR - 20
    assert lease_row(store, theirs.lease_id)["expires_at"] == theirs.expires_at  # untouched
    assert store.list_agents()[0]["telemetry"] == {"temp_c": 50}


def test_heartbeat_does_not_keep_unlisted_leases_alive(store, digest):
    """A restarted agent (same id) no longer knows its old lease: it must run out."""
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    orphan = lease(store, lease_seconds=-1)[0]
    assert store.heartbeat("a1", [], {}, lease_seconds=HOUR) == []
    assert lease_row(store, orphan.lease_id)["expires_at"] == orphan.expires_at
    assert store.sweep(offline_after_s=HOUR)["expired"] == 1
    assert store.job(job_id)["state"] == "queued"


def test_silent_agents_go_offline_and_their_leases_are_requeued(store, digest):
    add_agent(store, "quiet")
    add_agent(store, "chatty")
    job_id = enqueue(store, digest, agent_id="quiet")[0]
    held = lease(store, "quiet")[0]  # a long lease: only going offline frees it
    age_heartbeats(store, 100, "quiet")
    assert store.sweep(offline_after_s=30) == {
        "expired": 0,
        "offline": 1,
        "requeued_from_offline": 1,
        "cooled": 0,
    }
    assert agent_row(store, "quiet")["online"] == 0
    assert agent_row(store, "chatty")["online"] == 1
    assert lease_row(store, held.lease_id)["state"] == "expired"
    job = store.job(job_id)
    assert job["state"] == "queued" and "went offline" in job["error"]
    assert store.heartbeat("quiet", [held.lease_id], {}, HOUR) == [held.lease_id]
    assert agent_row(store, "quiet")["online"] == 1
    assert lease(store, "quiet")[0].attempt == 2


def test_cancel_jobs(store, digest):
    add_agent(store)
    queued, leased, done = enqueue(store, digest, 3)
    held = {j.job_id: j for j in lease(store, max_jobs=2)}
    store.report("a1", done, lease(store)[0].lease_id, "ok", ok())
    assert store.cancel_jobs([queued, leased, done, "ghost"]) == 2
    assert [store.job(j)["state"] for j in (queued, leased, done)] == [
        "cancelled",
        "cancelled",
        "done",
    ]
    assert lease(store, max_jobs=10) == []
    lease_id = held[leased].lease_id
    assert store.heartbeat("a1", [lease_id], {}, HOUR) == [lease_id]
    outcome = store.report("a1", leased, lease_id, "ok", ok())
    assert not outcome.accepted and not outcome.duplicate
    assert outcome.late  # the lease ended with the cancel, though its time had not run out
    assert store.results(leased)[0]["accepted"] == 0
    assert store.job(leased)["state"] == "cancelled"
    assert store.job(leased)["accepted_result"] is None
    assert agent_row(store, "a1")["jobs_done"] == 1  # only `done`


def test_an_agent_registering_again_gives_up_its_old_leases(store, digest):
    """A restarted agent (same id) no longer runs the jobs it held: they are requeued at
    once, counting the attempt, instead of waiting out the lease."""
    token = add_agent(store, "a1")
    (job_id,) = enqueue(store, digest)
    (held,) = lease(store, "a1")
    store.register_agent(token, "a1", ["cpu"], {}, 1, "v")
    assert lease_row(store, held.lease_id)["state"] == "expired"
    job = store.job(job_id)
    assert (job["state"], job["attempts"]) == ("queued", 1)
    assert "restarted" in job["error"]
    assert lease(store, "a1")[0].attempt == 2


def test_heartbeat_of_many_ids_is_one_query(store, digest):
    """Duplicates and unknown ids come back as lost, in the order given; known ones renew."""
    add_agent(store, "a1")
    enqueue(store, digest)
    (held,) = lease(store, "a1")
    assert store.heartbeat("a1", ["x", held.lease_id, "x", held.lease_id], {}, HOUR) == ["x", "x"]
