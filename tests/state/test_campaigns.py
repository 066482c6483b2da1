"""The state's contract for campaigns: recording one with its items, queueing its jobs in
chunks, the transitions to done (in the transaction that finishes its last job, whatever
finishes it) and to cancelled, and the results of its items."""

from __future__ import annotations

import pytest

from coordinator.state import (
    CAMPAIGN_RESULT_KEYS,
    RESULT_FIELDS,
    Artifact,
    CampaignItem,
    Devices,
    NotFound,
)
from tests.state.helpers import HOUR, SPEC, add_agent, age_leases, enqueue, lease, lease_row, ok

CPU, PI = Devices(label="cpu"), Devices(label="pi")
INPUTS = [["input", [1, 3, 64, 64]]]


def items(digest):
    return [
        CampaignItem(0, "lut", "lut-a", 64, 1.0, digest, INPUTS),
        CampaignItem(1, "lut", "lut-b", 64, 1.0, digest, INPUTS),
        CampaignItem(2, "subnet", '{"subnet": 1}', 64, 1.0, digest, INPUTS),
    ]


def start(store, digest, campaign_id="c1", targets=(CPU,), name=None, max_attempts=3, repeats=1):
    """A running campaign with every item `repeats` times per target; returns its job count."""
    store.add_campaign(campaign_id, name or campaign_id, "{}", items(digest))
    store.begin_campaign_start(campaign_id)
    for target in targets:
        jobs = [
            (i, repeat, SPEC + bytes([i]), digest) for repeat in range(repeats) for i in range(3)
        ]
        assert store.queue_campaign_jobs(campaign_id, target, 0, jobs, max_attempts)
    store.finish_campaign_start(campaign_id)
    return 3 * repeats * len(targets)


def run_all(store, agent_id="a1", status="ok", **result):
    """Lease and report every job the agent can get; returns the job ids."""
    done = []
    while leased := lease(store, agent_id, max_jobs=8):
        for job in leased:
            store.report(agent_id, job.job_id, job.lease_id, status, ok(**result))
            done.append(job.job_id)
    return done


def test_a_campaign_is_recorded_with_its_items(store, digest):
    store.add_campaign("c1", "first", '{"x": 1}', items(digest))
    campaign = store.campaign("c1")
    assert (campaign.id, campaign.name, campaign.spec, campaign.state) == (
        "c1",
        "first",
        '{"x": 1}',
        "created",
    )
    assert campaign.started_at is None and campaign.finished_at is None
    assert store.campaign_items("c1") == items(digest)
    assert [c.id for c in store.find_campaigns("c1")] == ["c1"]
    assert [c.id for c in store.find_campaigns("first")] == ["c1"]
    assert store.find_campaigns("ghost") == []
    assert [c.id for c in store.list_campaigns()] == ["c1"]
    with pytest.raises(NotFound, match="ghost"):
        store.campaign("ghost")


def test_campaign_names_are_unique(store, digest):
    store.add_campaign("c1", "same", "{}", items(digest))
    with pytest.raises(ValueError, match=r"^name: campaign c1 is already named 'same'"):
        store.add_campaign("c2", "same", "{}", items(digest))
    with pytest.raises(ValueError, match=r"^name: campaign c1"):
        store.refuse_taken_campaign_name("same")
    store.refuse_taken_campaign_name("other")
    assert [c.id for c in store.list_campaigns()] == ["c1"]


def test_a_start_queues_jobs_per_target_in_chunks(store, digest):
    add_agent(store, "a1", labels=("cpu",))
    assert start(store, digest, targets=(CPU, PI)) == 6
    assert store.campaign("c1").state == "running" and store.campaign("c1").started_at
    assert store.campaign_jobs_queued("c1") == 6
    assert store.campaign_jobs_queued("c1", CPU) == store.campaign_jobs_queued("c1", PI) == 3
    assert store.job_counts("c1") == {"queued": 6}
    progress = store.campaign_progress("c1", since=0)
    assert progress.counts == {"label:cpu": {"queued": 3}, "label:pi": {"queued": 3}}
    assert (progress.finished_since, progress.errors) == (0, [])


def test_a_chunk_is_queued_only_where_the_stored_jobs_end(store, digest):
    store.add_campaign("c1", "c1", "{}", items(digest))
    chunk = [(0, 0, SPEC, digest)]
    with pytest.raises(ValueError, match="became created"):
        store.queue_campaign_jobs("c1", CPU, 0, chunk, 3)  # not starting yet
    store.begin_campaign_start("c1")
    store.begin_campaign_start("c1")  # an interrupted start resumes
    assert store.queue_campaign_jobs("c1", CPU, 0, chunk, 3)
    with pytest.raises(ValueError, match="another process is queueing"):
        store.queue_campaign_jobs("c1", CPU, 0, chunk, 3)
    assert store.campaign_jobs_queued("c1") == 1
    store.finish_campaign_start("c1")
    assert not store.queue_campaign_jobs("c1", CPU, 1, chunk, 3)  # another start finished
    with pytest.raises(ValueError, match=r"^campaign c1: is running, not created"):
        store.begin_campaign_start("c1")
    assert store.campaign_jobs_queued("c1") == 1


def test_a_campaign_is_done_in_the_report_of_its_last_job(store, digest):
    add_agent(store)
    start(store, digest)
    (first, *rest) = lease(store, max_jobs=3)
    store.report("a1", first.job_id, first.lease_id, "ok", ok())
    assert store.campaign("c1").state == "running"
    for job in rest:
        store.report("a1", job.job_id, job.lease_id, "ok", ok())
    campaign = store.campaign("c1")
    assert campaign.state == "done" and campaign.finished_at is not None


def test_a_campaign_is_done_when_its_last_job_fails_at_expiry(store, digest):
    add_agent(store)
    start(store, digest, max_attempts=1)
    lease(store, max_jobs=3)
    age_leases(store, 2 * HOUR)
    assert store.sweep(offline_after_s=HOUR)["expired"] == 3
    assert store.job_counts("c1") == {"failed": 3}
    assert store.campaign("c1").state == "done"
    assert len(store.campaign_progress("c1", since=0).errors) == 3


def test_a_campaign_is_done_when_its_last_spec_is_refused_at_lease(store, digest):
    add_agent(store)
    start(store, digest)

    def refuse(spec):
        raise ValueError("no such runtime")

    assert store.lease_jobs("a1", 8, HOUR, check_spec=refuse) == []
    assert store.campaign("c1").state == "done"
    assert store.campaign_progress("c1", since=0).errors == ["spec: no such runtime"] * 3


def test_a_campaign_whose_agents_finished_during_its_start_is_done_at_once(store, digest):
    add_agent(store)
    store.add_campaign("c1", "c1", "{}", items(digest))
    store.begin_campaign_start("c1")
    assert store.queue_campaign_jobs("c1", CPU, 0, [(0, 0, SPEC, digest)], 3)
    assert len(run_all(store)) == 1
    assert store.campaign("c1").state == "starting"
    store.finish_campaign_start("c1")
    assert store.campaign("c1").state == "done"


def test_a_campaign_is_done_when_its_last_jobs_are_cancelled(store, digest):
    add_agent(store)
    start(store, digest)
    jobs = [job.job_id for job in lease(store, max_jobs=3)]
    assert store.cancel_jobs(jobs) == 3
    assert store.campaign("c1").state == "done"


def test_cancel_marks_the_campaign_and_its_unfinished_jobs(store, digest):
    add_agent(store)
    start(store, digest)
    other = enqueue(store, digest)  # not the campaign's
    done = lease(store)[0]
    store.report("a1", done.job_id, done.lease_id, "ok", ok())
    held = lease(store)[0]
    assert store.cancel_campaign("c1") == 2  # one leased, one queued
    campaign = store.campaign("c1")
    assert campaign.state == "cancelled" and campaign.finished_at is not None
    assert store.job_counts("c1") == {"done": 1, "cancelled": 2}
    assert lease_row(store, held.lease_id)["state"] == "superseded"
    assert store.job(other[0])["state"] == "queued"
    assert store.cancel_campaign("c1") == 0  # again: nothing left
    assert store.campaign("c1").state == "cancelled"


def test_cancel_leaves_a_finished_campaign_done(store, digest):
    add_agent(store)
    start(store, digest)
    run_all(store)
    assert store.cancel_campaign("c1") == 0
    assert store.campaign("c1").state == "done"


def test_a_cancelled_campaign_queues_nothing_more(store, digest):
    store.add_campaign("c1", "c1", "{}", items(digest))
    store.begin_campaign_start("c1")
    store.cancel_campaign("c1")
    with pytest.raises(ValueError, match="became cancelled while its jobs were queued"):
        store.queue_campaign_jobs("c1", CPU, 0, [(0, 0, SPEC, digest)], 3)
    assert store.campaign_jobs_queued("c1") == 0


def test_item_results_are_the_accepted_ok_results_of_the_target(store, digest):
    add_agent(store, "a1", labels=("cpu",))
    add_agent(store, "a2", labels=("pi",))
    start(store, digest, targets=(CPU, PI), repeats=2)
    first = lease(store, "a1")[0]  # fails once: not a result to use
    store.report("a1", first.job_id, first.lease_id, "failed", {"message": "boom"})
    assert store.accepted_count(CPU, "lut") == 0
    run_all(store, "a1", samples=(1_000_000, 3_000_000), runtime_versions={"ort": "1"})
    assert store.accepted_count(CPU, "lut") == 4 and store.accepted_count(CPU, "subnet") == 2
    assert store.accepted_count(PI, "lut") == 0
    run_all(store, "a2", samples=(9_000_000,))
    lut = store.item_results(CPU, "lut")
    assert sorted((r.r, r.key) for r in lut) == [(64, "lut-a")] * 2 + [(64, "lut-b")] * 2
    assert {(r.median_ms, r.agent_id, r.campaign_id) for r in lut} == {(2.0, "a1", "c1")}
    assert all(r.samples_ns.tolist() == [1_000_000, 3_000_000] for r in lut)
    assert {r.runtime_versions for r in lut} == {'{"ort":"1"}'}
    subnets = store.item_results(CPU, "subnet")
    assert [(r.key, r.median_ms) for r in subnets] == [('{"subnet": 1}', 2.0)] * 2
    assert [r.median_ms for r in store.item_results(PI, "subnet")] == [9.0] * 2
    assert store.item_results(CPU, "lut", ["other"]) == []
    assert len(store.item_results(CPU, "lut", ["c1", "other"])) == 4
    assert store.targeted_items(CPU, "lut") == {(64, "lut-a"), (64, "lut-b")}
    assert store.targeted_items(CPU, "lut", ["other"]) == set()
    assert store.targeted_items(Devices(label="gpu"), "lut") == set()
    assert [c.id for c in store.targeted_campaigns(CPU, "lut")] == ["c1"]
    assert [c.id for c in store.targeted_campaigns(PI, "subnet")] == ["c1"]
    assert store.targeted_campaigns(Devices(label="gpu"), "lut") == []


def test_campaign_results_list_every_result_with_its_item(store, digest):
    add_agent(store)
    start(store, digest)
    first = lease(store)[0]
    store.report("a1", first.job_id, first.lease_id, "failed", {"message": "boom"})
    run_all(store, drift={"drift": 0.5}, before={"temp_c": 40.0})
    rows = list(store.campaign_results("c1"))
    assert len(rows) == 4
    assert all(list(row) == [*CAMPAIGN_RESULT_KEYS, *RESULT_FIELDS, "samples_ns"] for row in rows)
    assert [(row["status"], row["accepted"], row["message"]) for row in rows][0] == (
        "failed",
        1,
        "boom",
    )
    ok_row = rows[-1]
    assert (ok_row["campaign"], ok_row["target"], ok_row["agent_id"], ok_row["repeat"]) == (
        "c1",
        "label:cpu",
        "a1",
        0,
    )
    assert ok_row["samples_ns"] == [1_000_000, 2_000_000, 3_000_000]
    assert ok_row["drift"] == 0.5 and ok_row["drift_check"] == {"drift": 0.5}
    assert ok_row["telemetry_before"] == {"temp_c": 40.0} and ok_row["runtime_versions"] == {}
    assert rows[0]["drift_check"] == {}
    assert list(store.campaign_results("ghost")) == []
    assert store.result_counts() == {"stored": 4, "accepted": 4}
    assert store.result_counts("a1")["stored"] == 4 and store.result_counts("x")["stored"] == 0


def test_campaign_results_stream_from_one_snapshot_while_the_store_works(store, digest):
    """A campaign's results are read as they are consumed: other calls, writes too, may run
    between two rows."""
    add_agent(store)
    start(store, digest)
    run_all(store)
    stream = store.campaign_results("c1")
    first = next(stream)
    store.add_blob("e" * 64, 1)  # a write between two rows
    assert store.blob_size("e" * 64) == 1 and store.list_campaigns()
    assert [first, *stream] == list(store.campaign_results("c1"))
    assert len(list(store.campaign_results("c1"))) == 3


def test_the_artifact_cache(store, digest):
    assert store.cached_artifact("lut", "k", "-") is None
    store.cache_artifact("lut", "k", "-", Artifact(digest, INPUTS))
    assert store.cached_artifact("lut", "k", "-") == Artifact(digest, INPUTS)
    assert store.cached_artifact("lut", "k", "seed0") is None
    store.cache_artifact("lut", "k", "-", Artifact(digest, []))  # rebuilt: replaced
    assert store.cached_artifact("lut", "k", "-") == Artifact(digest, [])
