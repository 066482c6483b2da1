"""Starting a campaign queues its jobs in short transactions (a campaign of 192k jobs must not
hold the write lock for seconds) and a start that stopped half way resumes without queueing a
job twice. Real store, real exported models; QUEUE_CHUNK is made small so that a handful of
jobs spans several chunks."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from coordinator.cli.app import main
from coordinator.services import campaigns
from coordinator.services.campaigns import (
    CampaignSpec,
    cancel_campaign,
    create_campaign,
    start_campaign,
)
from coordinator.state import BlobStore, Devices, Store
from ofa.config import SubnetConfig

REPEATS = 5
TARGETS = (Devices(label="cpu"), Devices(label="pi"))


@pytest.fixture
def created(tmp_path, monkeypatch) -> tuple[Store, str]:
    """A created campaign of two subnets x 5 repeats with a drift reference every 3 jobs, on
    two device labels: 10 measured jobs and 4 reference checks per target, 4 per chunk."""
    monkeypatch.setattr(campaigns, "QUEUE_CHUNK", 4)
    configs = tmp_path / "two.jsonl"
    configs.write_text("".join(SubnetConfig.smallest(r=r).to_json() + "\n" for r in (48, 56)))
    store = Store(tmp_path / "fleet.db")
    for target in TARGETS:
        token = store.token_by_secret(store.create_token(target.label))
        store.register_agent(token, "", [target.label], {"machine": "x86_64"}, 1, "test")
    campaign = create_campaign(
        store,
        BlobStore(store),
        CampaignSpec(
            name="chunked",
            targets=TARGETS,
            workload="configs",
            configs_file=str(configs),
            repeats=REPEATS,
            reference_every=3,
        ),
    )
    yield store, campaign
    store.close()


def queued(store: Store, campaign: str) -> dict[str, Counter]:
    """Per target, how often each (item, repeat) was queued."""
    counts: dict[str, Counter] = {}
    for row in store.db.execute(
        "SELECT target, item, repeat FROM campaign_jobs WHERE campaign_id=?", (campaign,)
    ):
        counts.setdefault(row["target"], Counter())[(row["item"], row["repeat"])] += 1
    return counts


def state(store: Store, campaign: str) -> str:
    return store.campaign(campaign).state


def test_a_start_queues_every_job_once_in_several_transactions(created):
    store, campaign = created
    commits = []
    store.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    assert start_campaign(store, campaign) == 2 * 14
    store.db.set_trace_callback(None)
    # claim + 4 chunks of at most 4 jobs per target (14 each) + the flip to running
    assert len(commits) == 1 + 2 * 4 + 1
    (reference,) = [
        item.item for item in store.campaign_items(campaign) if item.kind == "reference"
    ]
    counts = queued(store, campaign)
    assert set(counts) == {t.name for t in TARGETS}
    for target, pairs in counts.items():
        assert set(pairs.values()) == {1}, target  # no (item, repeat) queued twice
        measured = {pair for pair in pairs if pair[0] != reference}
        subnets = {0, 1, 2} - {reference}
        assert measured == {(item, r) for item in subnets for r in range(REPEATS)}, target
        assert sum(1 for item, _ in pairs if item == reference) == 4, target  # drift checks
    assert state(store, campaign) == "running"
    with pytest.raises(ValueError, match="is running, not created"):
        start_campaign(store, campaign)


def test_an_interrupted_start_resumes_where_it_stopped(created, monkeypatch):
    store, campaign = created
    real_enqueue, calls = store.enqueue, []

    def enqueue_then_crash(*args, **kwargs):  # fault injection: the process dies mid-start
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(store, "enqueue", enqueue_then_crash)
    with pytest.raises(KeyboardInterrupt):
        start_campaign(store, campaign)
    assert state(store, campaign) == "starting"
    assert sum(sum(c.values()) for c in queued(store, campaign).values()) == 2 * 4
    monkeypatch.setattr(store, "enqueue", real_enqueue)

    output = CliRunner().invoke(main, ["campaign", "status", "--db", store.location, campaign])
    assert f"resume it: ofa-coord campaign start --db {store.location} {campaign}" in output.stderr
    assert start_campaign(store, campaign) == 2 * 14
    assert state(store, campaign) == "running"
    for target, pairs in queued(store, campaign).items():
        assert sum(pairs.values()) == 14 and set(pairs.values()) == {1}, target
    assert sum(store.job_counts(campaign).values()) == 2 * 14  # no job outside campaign_jobs


def test_a_campaign_cancelled_while_starting_stops_queueing(created, monkeypatch, tmp_path):
    store, campaign = created
    other = Store(tmp_path / "fleet.db")  # `campaign cancel` in another process
    real_transaction, begun = store.transaction, []

    def transaction():
        if not store.db.in_transaction:  # between two of the start's transactions
            begun.append(1)
            if len(begun) == 3:  # after the claim and the first chunk
                cancel_campaign(other, campaign)
        return real_transaction()

    monkeypatch.setattr(store, "transaction", transaction)
    with pytest.raises(ValueError, match="became cancelled while its jobs were queued"):
        start_campaign(store, campaign)
    other.close()
    assert state(store, campaign) == "cancelled"
    # the first chunk, and nothing queued after the cancel
    assert store.job_counts(campaign) == {"cancelled": 4}


def test_a_start_overtaken_by_another_that_finished_returns_quietly(created, monkeypatch, tmp_path):
    """Two `campaign start`s at once: the second finishes the queue while the first waits
    between chunks; the first then stops, and every job was queued once."""
    store, campaign = created
    other = Store(tmp_path / "fleet.db")
    real_transaction, begun = store.transaction, []

    def transaction():
        if not store.db.in_transaction:
            begun.append(1)
            if len(begun) == 3:  # after the claim and the first chunk
                assert start_campaign(other, campaign) == 2 * 14
        return real_transaction()

    monkeypatch.setattr(store, "transaction", transaction)
    assert start_campaign(store, campaign) == 2 * 14
    other.close()
    assert state(store, campaign) == "running"
    for target, pairs in queued(store, campaign).items():
        assert sum(pairs.values()) == 14 and set(pairs.values()) == {1}, target


def test_a_campaign_is_done_when_its_last_job_is_without_anyone_asking(created):
    """The report that finishes the last job marks the campaign done (nothing reads its
    status here); a failed job counts as finished too."""
    store, campaign = created
    start_campaign(store, campaign)
    agents = {row["labels"][0]: row["id"] for row in store.list_agents()}
    leased = [
        (agents[label], job)
        for label in ("cpu", "pi")
        for job in store.lease_jobs(agents[label], 100, 60)
    ]
    assert len(leased) == 2 * 14
    *most, (agent, last) = leased
    for job_agent, job in most:
        store.report(
            job_agent,
            job.job_id,
            job.lease_id,
            "ok",
            {"samples_ns": [1_000_000] * 10, "stop_reason": "time_cap"},
        )
        assert state(store, campaign) == "running"
    store.db.execute("UPDATE jobs SET max_attempts=1 WHERE id=?", (last.job_id,))  # white box
    store.report(agent, last.job_id, last.lease_id, "failed", {"message": "boom"})
    assert state(store, campaign) == "done"
