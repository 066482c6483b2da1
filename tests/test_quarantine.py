"""Quarantine: an agent whose measurements disagree with its peers' is found by the server,
left out of the label's latency table, shown by `devices`, and readmitted by an operator.
The decision (`coordinator.server.quarantine.review`) on a real store, then end to end."""

from __future__ import annotations

import json
import statistics
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from agent.client import FleetClient
from agent.measure import measure
from agent.runner import settings_from_spec
from coordinator.server.quarantine import review
from coordinator.state import BlobStore, Store
from proto.ofafleet.v1 import fleet_pb2 as pb
from tests.cli_output import cli
from tests.fleet import QUICK_FLAGS, Fleet, wait_for
from tests.state.helpers import add_agent
from tests.state.test_quarantine import measure as measured


def quarantined(store) -> set[str]:
    return {a["id"] for a in store.list_agents() if a["quarantine"] is not None}


# ------------------------------------------------------------------- the decision
@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "fleet.db")
    yield store
    store.close()


@pytest.fixture
def digest(store):
    return BlobStore(store).put(b"model bytes")


def test_the_agent_that_disagrees_with_its_peers_is_quarantined(store, digest):
    for agent in ("h1", "h2", "liar"):
        add_agent(store, agent)
    for model in range(6):
        for agent, ms in (("h1", 2.0), ("h2", 2.5), ("liar", 0.75)):
            measured(store, digest, agent, model, ms)
    [peer] = review(store, "cpu")
    assert peer.agent_id == "liar" and peer.ratio == pytest.approx(0.75 / 2.25)
    assert quarantined(store) == {"liar"}
    [listed] = [a for a in store.list_agents() if a["id"] == "liar"]
    assert listed["quarantine"]["reason"] == (
        "label cpu: its medians are 0.333x its peers' over 6 shared models (allowed 0.667-1.5)"
    )
    assert review(store, "cpu") == []  # judged already: nothing new


def test_an_honest_agent_that_shared_mostly_with_the_liar_is_not_quarantined(store, digest):
    """h1 shared six models with the liar alone and three with h2: its ratio to its peers
    is 3, but it agrees with h2, so it is not quarantined. Nor is the liar while h2 is not
    yet its peer: then nothing says which of h1 and the liar is wrong."""
    for agent in ("h1", "h2", "liar"):
        add_agent(store, agent)
    for model in range(6):
        measured(store, digest, "h1", model, 3.0)
        measured(store, digest, "liar", model, 1.0)
    for model in range(6, 9):
        measured(store, digest, "h1", model, 3.0)
        measured(store, digest, "h2", model, 3.0)
    assert {p.agent_id: p.ratio for p in store.peer_ratios("cpu")}["h1"] == 3.0
    assert review(store, "cpu") == [] and quarantined(store) == set()
    measured(store, digest, "h2", 0, 3.0)  # the liar's first model shared with h2
    assert [p.agent_id for p in review(store, "cpu")] == ["liar"]
    assert quarantined(store) == {"liar"}


@pytest.mark.parametrize("shared", [4, 8])
def test_no_quarantine_without_two_peers_or_enough_shared_models(store, digest, shared):
    """Two agents that disagree: nothing says which one is wrong. Three, with fewer than
    five shared models: too little to judge."""
    for agent in ("a", "b", "c"):
        add_agent(store, agent)
    for model in range(shared):
        measured(store, digest, "a", model, 1.0)
        measured(store, digest, "b", model, 3.0)
    if shared == 4:
        for model in range(shared):
            measured(store, digest, "c", model, 3.0)
    assert review(store, "cpu") == [] and quarantined(store) == set()


# ----------------------------------------------------------------------- end to end
def lie(address: str, token: Path, stop: threading.Event) -> None:
    """An agent that measures each job for real and reports its samples 3x too fast."""
    client = FleetClient(address, token.read_text().strip(), stop)
    agent_id = client.register("", ["cpu"], {}, 1, "liar").agent_id

    def beat() -> None:
        while not stop.wait(0.2):
            client.heartbeat(agent_id, [], {})

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    try:
        while not stop.is_set():
            for job in client.lease_jobs(agent_id, 1, wait_s=0.5):
                spec = job.spec
                model = client.read_blob(spec.model_digest, spec.model_size)
                settings = replace(settings_from_spec(spec), pin_cores=False)
                shapes = [list(t.dims) for t in spec.inputs] or None
                measurement = measure(model, settings, shapes)
                result = pb.Result(
                    status=pb.RESULT_STATUS_OK,
                    samples_ns=[ns // 3 for ns in measurement.samples_ns],
                    stop_reason=measurement.stop_reason,
                    runtime_versions=measurement.runtime_versions,
                )
                client.report(agent_id, job, result)
    finally:
        beating.join()
        client.close()


def test_a_lying_agent_is_quarantined_and_left_out_of_the_lut(tmp_path):
    """Two honest agents and a liar serve one label's LUT campaign, every item measured
    twice. The liar is simulated (a real gRPC client that measures each model and reports
    it 3x faster) because no real device lies."""
    fleet = Fleet(tmp_path)
    stop = threading.Event()
    try:
        fleet.start_server()
        fleet.start_agent("h1"), fleet.start_agent("h2")
        honest = {fleet.agent_id("h1"), fleet.agent_id("h2")}
        liar_thread = threading.Thread(
            target=lie, args=(fleet.address, fleet.token("liar", labels=("cpu",)), stop)
        )
        liar_thread.start()
        wait_for(lambda: len(fleet.store.list_agents()) == 3, 30, "the liar to register")
        [liar] = {a["id"] for a in fleet.store.list_agents()} - honest
        created = cli(
            *("campaign", "create", "--db", fleet.db, "--label", "cpu", *QUICK_FLAGS),
            *("--name", "lut", "--workload", "lut", "--resolutions", "64", "--repeats", "2"),
            "--start",
        )
        cid = created.split("campaign ", 1)[1].split()[0]
        cli("campaign", "wait", "--db", fleet.db, cid, "--timeout", "600", "--interval", "0.5")
        wait_for(lambda: quarantined(fleet.store), 30, "the liar to be quarantined")
        stop.set()
        liar_thread.join(timeout=30)
        assert_quarantined_and_left_out(fleet, tmp_path, liar, honest)
    finally:
        stop.set()
        fleet.close()


def assert_quarantined_and_left_out(fleet: Fleet, tmp_path: Path, liar: str, honest: set[str]):
    assert quarantined(fleet.store) == {liar}
    devices = json.loads(cli("devices", "--db", fleet.db, "--format", "json"))
    statuses = {a["id"]: a["status"] for a in devices}
    assert statuses[liar] == "quarantined" and statuses.keys() - {liar} == honest
    [shown] = [a for a in devices if a["id"] == liar]
    assert shown["quarantine"]["ratio"] < 1 / 1.5 and "peers'" in shown["quarantine"]["reason"]
    assert "quarantined" in cli("devices", "--db", fleet.db)

    medians: dict[str, dict[str, list[float]]] = {}
    for row in fleet.store.db.execute(
        "SELECT ci.key, res.agent_id, res.median_ms FROM results res JOIN campaign_jobs cj "
        "ON cj.job_id=res.job_id JOIN campaign_items ci ON ci.campaign_id=cj.campaign_id "
        "AND ci.item=cj.item WHERE ci.kind='lut' AND res.accepted=1 AND res.status='ok'"
    ):
        medians.setdefault(row["key"], {}).setdefault(row["agent_id"], []).append(row[2])
    assert any(liar in by_agent for by_agent in medians.values())
    expected = {
        key: statistics.median(ms for agent in honest for ms in by_agent.get(agent, []))
        for key, by_agent in medians.items()
        if honest & by_agent.keys()
    }
    assert exported(fleet, tmp_path / "lut") == pytest.approx(expected, rel=1e-12)

    assert cli("agent", "readmit", "--db", fleet.db, liar) == f"agent {liar} readmitted\n"
    assert quarantined(fleet.store) == set()
    assert exported(fleet, tmp_path / "lut-readmitted") != pytest.approx(expected, rel=1e-12)
    refused = cli("agent", "readmit", "--db", fleet.db, "ghost", expect=1)
    assert refused == "ofa-coord: error: agent_id: no agent 'ghost' has registered\n"


def exported(fleet: Fleet, out: Path) -> dict[str, float]:
    """The exported LUT's median per key (entries only the liar measured are missing while
    it is quarantined)."""
    cli(
        *("lut", "export", "--db", fleet.db, "--device", "cpu", "--out", out),
        *("--format", "json", "--allow-missing"),
    )
    table = json.loads((out / "cpu_lut.json").read_text())["tables"]["64"]
    return {key: entry["median_ms"] for key, entry in table.items()}
