"""The state's contract for quarantine: each agent's ratio to its peers on the models they
share, and a quarantined agent's results left out of the reads that build latency tables
(and out of its peers' comparisons) until it is readmitted."""

from __future__ import annotations

import pytest

from coordinator.state import Devices, NotFound, PeerRatio
from tests.state.helpers import HOUR, add_agent, ok
from tests.state.test_campaigns import run_all, start


def measure(store, digest, agent_id, model, ms, label="cpu"):
    """One accepted OK result of `agent_id` for model number `model` of `label` (the same
    spec bytes each time: the same model and settings), with a median of `ms`."""
    store.enqueue([(b"model-%d" % model, digest)], label=label)
    [held] = store.lease_jobs(agent_id, 1, HOUR)
    store.report(agent_id, held.job_id, held.lease_id, "ok", ok([int(ms * 1e6)] * 3))


def by_agent(ratios):
    return {peer.agent_id: peer for peer in ratios}


def test_peer_ratios_compare_each_agent_with_the_median_of_the_others(store, digest):
    for agent in ("a", "b", "c"):
        add_agent(store, agent)
    for model, ms in enumerate((1.0, 2.0, 4.0)):
        measure(store, digest, "a", model, ms)
        measure(store, digest, "b", model, ms * 1.25)
        measure(store, digest, "c", model, ms / 4)
    measure(store, digest, "a", 9, 5.0)  # measured by a alone: shared with no one
    ratios = by_agent(store.peer_ratios("cpu"))
    # on every model, a: 1 / median(1.25, 0.25); b: 1.25 / median(1, 0.25); c: 0.25 / 1.125
    assert ratios["a"] == PeerRatio(
        "a", pytest.approx(1 / 0.75), 3, {"b": 1 / 1.25, "c": 4.0}, False
    )
    assert ratios["b"].ratio == pytest.approx(1.25 / 0.625)
    assert ratios["c"].ratio == pytest.approx(0.25 / 1.125)
    assert ratios["c"].shared == 3 and ratios["c"].peers == pytest.approx({"a": 0.25, "b": 0.2})
    assert store.peer_ratios("other") == []


def test_an_agents_repeats_of_a_model_count_as_their_median(store, digest):
    add_agent(store, "a")
    add_agent(store, "b")
    for ms in (1.0, 2.0, 9.0):  # its median for the model: 2.0
        measure(store, digest, "a", 0, ms)
    measure(store, digest, "b", 0, 4.0)
    measure(store, digest, "b", 1, 4.0)  # another model: a did not measure it
    ratios = by_agent(store.peer_ratios("cpu"))
    assert ratios["a"] == PeerRatio("a", 0.5, 1, {"b": 0.5}, False)
    assert ratios["b"] == PeerRatio("b", 2.0, 1, {"a": 2.0}, False)


def test_only_accepted_ok_results_of_the_label_count(store, digest):
    add_agent(store, "a", labels=("cpu", "pi"))
    add_agent(store, "b", labels=("cpu", "pi"))
    measure(store, digest, "a", 0, 1.0)
    measure(store, digest, "b", 0, 1.0)
    measure(store, digest, "b", 1, 1.0, label="pi")  # another label
    store.enqueue([(b"model-1", digest)], label="cpu")
    [held] = store.lease_jobs("a", 1, HOUR)
    store.report("a", held.job_id, held.lease_id, "failed", {"message": "boom"})
    assert by_agent(store.peer_ratios("cpu"))["a"] == PeerRatio("a", 1.0, 1, {"b": 1.0}, False)


def test_a_quarantined_agent_is_no_ones_peer_until_readmitted(store, digest):
    for agent in ("a", "b", "c"):
        add_agent(store, agent)
    for agent, ms in (("a", 2.0), ("b", 2.0), ("c", 0.5)):
        measure(store, digest, agent, 0, ms)
    store.quarantine_agent("c", "label cpu: too fast", 0.25)
    store.quarantine_agent("c", "again", 9.0)  # already quarantined: kept as it was
    ratios = by_agent(store.peer_ratios("cpu"))
    assert ratios["a"] == PeerRatio("a", 1.0, 1, {"b": 1.0}, False)  # c is no one's peer now
    assert ratios["c"] == PeerRatio("c", 0.25, 1, {"a": 0.25, "b": 0.25}, True)  # but judged
    [listed] = [a for a in store.list_agents() if a["id"] == "c"]
    assert listed["quarantine"]["reason"] == "label cpu: too fast"
    assert listed["quarantine"]["ratio"] == 0.25 and listed["quarantine"]["at"] > 0
    assert store.readmit_agent("c") is True
    assert store.readmit_agent("c") is False  # nothing left to clear
    assert all(a["quarantine"] is None for a in store.list_agents())
    # readmitted, it is compared on what it measures from now on, not on what got it out
    assert by_agent(store.peer_ratios("cpu"))["a"].peers == {"b": 1.0}
    assert "c" not in by_agent(store.peer_ratios("cpu"))
    measure(store, digest, "c", 0, 2.0)
    assert by_agent(store.peer_ratios("cpu"))["a"].peers == {"b": 1.0, "c": 1.0}
    with pytest.raises(NotFound, match=r"^agent_id: no agent 'ghost' has registered"):
        store.readmit_agent("ghost")


def test_a_quarantined_agents_results_are_left_out_of_latency_tables(store, digest):
    cpu = Devices(label="cpu")
    add_agent(store, "honest")
    add_agent(store, "liar")
    start(store, digest, repeats=2)
    run_all(store, "honest", samples=(3_000_000,))
    start(store, digest, campaign_id="c2", repeats=1)
    run_all(store, "liar", samples=(1_000_000,))
    assert {r.agent_id for r in store.item_results(cpu, "lut")} == {"honest", "liar"}
    store.quarantine_agent("liar", "too fast", 1 / 3)
    assert {r.agent_id for r in store.item_results(cpu, "lut")} == {"honest"}
    assert list(store.campaign_results("c2")) == []
    assert {r["agent_id"] for r in store.campaign_results("c1")} == {"honest"}
    store.readmit_agent("liar")
    assert {r["agent_id"] for r in store.campaign_results("c2")} == {"liar"}
