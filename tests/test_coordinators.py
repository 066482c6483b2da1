"""Two coordinators on one PostgreSQL database, serving one fleet: real `ofa-coord serve`
and `ofa-agent run` processes on loopback. Killing one coordinator (kill -9) mid-campaign
moves its agents to the other, and every job still ends with exactly one accepted result."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.state import Store
from tests.fleet import Fleet, kill9, small_models, wait_for


@pytest.fixture
def fleet(postgres, tmp_path):
    fleet = Fleet(tmp_path, heartbeat_s=0.3, lease_seconds=4.0, db=postgres.new_database())
    yield fleet
    fleet.close()


def accepted_per_job(fleet: Fleet, jobs: list[str]) -> dict[str, int]:
    return {job: sum(r["accepted"] for r in fleet.store.results(job)) for job in jobs}


def test_a_killed_coordinator_s_agents_move_to_the_other(fleet):
    first = fleet.start_server()
    second = fleet.start_server()
    jobs = fleet.enqueue(small_models(12) * 2)
    for name, order in (("p", f"{first},{second}"), ("q", f"{second},{first}")):
        fleet.start_agent(name, address=order)
    wait_for(lambda: fleet.store.job_counts().get("done", 0) >= 4, 60, "4 jobs done")
    kill9(fleet.servers[0])
    fleet.wait_done(jobs, timeout=120)
    assert fleet.store.job_counts() == {"done": len(jobs)}
    assert set(accepted_per_job(fleet, jobs).values()) == {1}
    assert f"coordinator {first} is unreachable; moving to {second}" in fleet.agent_log("p")
    assert "moving to" not in fleet.agent_log("q")  # its coordinator never went away
    assert all(agent.poll() is None for agent in fleet.agents.values())


def test_agents_spread_over_two_coordinators_serve_one_campaign(fleet):
    """Each agent knows one coordinator only; both coordinators hand out the one queue."""
    first = fleet.start_server()
    second = fleet.start_server()
    jobs = fleet.enqueue(small_models(8) * 2)
    fleet.start_agent("p", address=first)
    fleet.start_agent("q", address=second)
    fleet.wait_done(jobs, timeout=120)
    assert set(accepted_per_job(fleet, jobs).values()) == {1}
    by_agent = {fleet.agent_id(name): name for name in ("p", "q")}
    measured = {by_agent[r["agent_id"]] for job in jobs for r in fleet.store.results(job)}
    assert measured == {"p", "q"}
    # the command line reads the same fleet from the URL, on any machine
    listed = CliRunner().invoke(coord, ["devices", "--db", fleet.db, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert {agent["id"] for agent in json.loads(listed.stdout)} == set(by_agent)


def test_the_files_folder_is_needed_once_and_never_changed(postgres, tmp_path):
    """A PostgreSQL fleet records its files folder with its first coordinator; a serve
    without one, or with another, is refused in one line; an SQLite fleet takes none and
    no database file is left by the refusal."""
    url = postgres.new_database()
    serve = ["serve", "--listen", "127.0.0.1:0", "--db"]
    refused = CliRunner().invoke(coord, [*serve, url])
    assert refused.exit_code == 1 and "this fleet has no folder for its files yet" in refused.stderr
    store = Store(url)
    store.set_files_root(tmp_path / "files")
    store.close()
    refused = CliRunner().invoke(coord, [*serve, url, "--files", str(tmp_path / "other")])
    assert refused.exit_code == 1
    assert f"this fleet keeps its files in {tmp_path / 'files'}" in refused.stderr
    db = tmp_path / "fleet.db"
    refused = CliRunner().invoke(coord, [*serve, str(db), "--files", str(tmp_path / "files")])
    assert refused.exit_code == 1 and "an SQLite fleet keeps its files beside" in refused.stderr
    assert not db.exists()
