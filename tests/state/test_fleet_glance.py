"""The state's contract for the reads behind `ofa-coord status`: the active leases with what
they measure, each label's queue and recent throughput, and each agent's last error."""

from __future__ import annotations

import time

from tests.state.helpers import SPEC, add_agent, disturbed, enqueue, lease, ok
from tests.state.test_campaigns import start


def test_current_leases_are_the_active_ones_with_their_spec_and_campaign(store, digest):
    add_agent(store, "a1")
    add_agent(store, "a2", labels=("pi",))
    assert store.current_leases() == []
    start(store, digest, "c1", name="first")  # 3 jobs for cpu
    plain = enqueue(store, digest, label="pi")[0]
    before = time.time()
    campaign_job = lease(store, "a1")[0]
    plain_lease = lease(store, "a2")[0]
    after = time.time()
    leases = store.current_leases()
    assert [(c.agent_id, c.job_id, c.campaign_id, c.campaign_name) for c in leases] == [
        ("a1", campaign_job.job_id, "c1", "first"),
        ("a2", plain, None, None),
    ]
    assert all(before <= c.issued_at <= after for c in leases)
    assert [c.spec for c in leases] == [campaign_job.spec, SPEC + bytes([0])]
    store.report("a2", plain, plain_lease.lease_id, "ok", ok())
    assert [c.job_id for c in store.current_leases()] == [campaign_job.job_id]


def test_label_queue_counts_queued_leased_and_recently_measured_jobs(store, digest):
    add_agent(store, "a1", labels=("cpu",))
    add_agent(store, "a2", labels=("pi",))
    enqueue(store, digest, n=4, label="cpu")
    enqueue(store, digest, n=2, label="pi")
    enqueue(store, digest, n=1, agent_id="a1")  # meant for one agent, not a label
    since = time.time()
    first, second = lease(store, "a1", max_jobs=2)
    store.report("a1", first.job_id, first.lease_id, "ok", ok())
    store.report("a1", second.job_id, second.lease_id, "failed", ok(message="boom"))
    # the failure is retried: queued again, not finished
    cancelled = enqueue(store, digest, n=1, label="pi")
    store.cancel_jobs(cancelled)  # finished, but never measured
    lease(store, "a2")
    queues = {q.label: (q.queued, q.leased, q.finished_since) for q in store.label_queue(since)}
    assert queues == {"cpu": (3, 0, 1), "pi": (1, 1, 0)}
    later = {q.label: q.finished_since for q in store.label_queue(time.time() + 1)}
    assert later == {"cpu": 0, "pi": 0}


def test_a_label_with_nothing_to_do_and_nothing_recent_is_left_out(store, digest):
    add_agent(store, "a1")
    job = enqueue(store, digest)[0]
    held = lease(store, "a1")[0]
    store.report("a1", job, held.lease_id, "ok", ok())
    assert store.label_queue(time.time() + 1) == []
    assert [(q.label, q.finished_since) for q in store.label_queue(0)] == [("cpu", 1)]


def test_last_errors_are_each_agents_latest_failure_or_disturbance(store, digest):
    add_agent(store, "a1")
    add_agent(store, "a2")
    add_agent(store, "a3")
    enqueue(store, digest, n=4)
    for agent_id, status, result in (
        ("a1", "failed", ok(message="session: bad model")),
        ("a1", "disturbed", disturbed(reasons=("cpu_wait 0.4 > 0.05", "steal 9 > 5"))),
        ("a2", "failed", ok(message="out of memory")),
        ("a3", "ok", ok()),
    ):
        held = lease(store, agent_id)[0]
        store.report(agent_id, held.job_id, held.lease_id, status, result)
    errors = store.last_errors()
    assert [(e.agent_id, e.status, e.message, e.reasons) for e in errors] == [
        ("a1", "disturbed", "", ("cpu_wait 0.4 > 0.05", "steal 9 > 5")),
        ("a2", "failed", "out of memory", ()),
    ]
