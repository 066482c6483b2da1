"""`ofa-coord status` on a real fleet (server and agent processes on loopback) while a
campaign runs: the agent, the job it measures and its jobs done; the label's queue as the
state counts it; the running campaign; the table agreeing with the JSON; and `--watch`
drawing until Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from coordinator.cli.app import main as coord
from ofa.config import SubnetConfig
from tests.cli_output import campaign_id, cli, stdout
from tests.fleet import BIN, QUICK_FLAGS, Fleet, wait_for
from tests.test_cli_output import parse_table

# Few subnets (each costs an export) measured many times, each for at least MIN_TIME_S: the
# campaign outlasts the tests (the fleet is stopped with it unfinished).
SUBNETS, REPEATS, MIN_TIME_S = 2, 5, "1.5"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("status"))
    try:
        fleet.start_server()
        fleet.start_agent("a", labels=("cpu",))
        fleet.agent_id("a")
        yield fleet
    finally:
        fleet.close()


@pytest.fixture(scope="module")
def campaign(fleet) -> str:
    """A running campaign of SUBNETS random subnets on cpu, REPEATS times each, with a first
    result."""
    cid = campaign_id(
        cli(
            "campaign",
            "create",
            "--db",
            fleet.db,
            "--label",
            "cpu",
            *QUICK_FLAGS,
            "--min-time",
            MIN_TIME_S,
            "--name",
            "glance",
            "--workload",
            "random",
            "--count",
            SUBNETS,
            "--resolutions",
            "48",
            "--repeats",
            REPEATS,
            "--reference-every",
            "0",
            "--start",
        )
    )
    wait_for(lambda: fleet.store.job_counts(cid).get("done"), 60, "a first result")
    return cid


def status_json(fleet: Fleet) -> dict:
    return json.loads(stdout(coord, "status", "--db", fleet.db, "--format", "json"))


def measuring_snapshot(fleet: Fleet) -> tuple[dict, dict] | None:
    """The status while the agent measures a job, with the state's job counts, when no job
    changed state while it was read (None otherwise: poll again)."""
    before = fleet.store.job_counts()
    current = status_json(fleet)
    if fleet.store.job_counts() != before or current["agents"][0]["job"] is None:
        return None
    return current, before


def test_status_shows_the_agent_its_job_the_label_queue_and_the_campaign(fleet, campaign):
    current, counts = wait_for(
        lambda: measuring_snapshot(fleet), 30, "a status read while a job was measured"
    )
    (agent,) = current["agents"]
    assert agent["id"] == fleet.agent_id("a") and agent["status"] == "online"
    assert agent["labels"] == ["cpu"] and "CPU" in agent["capabilities"]
    assert agent["jobs_done"] == counts["done"] >= 1 and agent["last_error"] is None
    subnets = {SubnetConfig.from_json(item.key).id for item in fleet.store.campaign_items(campaign)}
    job = agent["job"]
    assert job["campaign"] == "glance" and job["campaign_id"] == campaign
    assert job["what"].removeprefix("subnet ") in subnets
    assert fleet.store.job(job["job_id"])["campaign"] == campaign

    (label,) = current["labels"]
    assert (label["label"], label["queued"], label["leased"], label["agents_online"]) == (
        "cpu",
        counts.get("queued", 0),
        counts["leased"],
        1,
    )
    assert label["rate_per_s"] * 60 == pytest.approx(counts["done"])  # all in the last minute
    left = label["queued"] + label["leased"]
    assert label["eta_s"] == pytest.approx(left / label["rate_per_s"])

    (running,) = current["campaigns"]
    assert (running["id"], running["name"], running["state"]) == (campaign, "glance", "running")
    assert running["total"] == SUBNETS * REPEATS and running["finished"] == counts["done"]


def test_the_tables_show_the_agents_labels_and_campaigns_of_the_json(fleet, campaign):
    text = stdout(coord, "status", "--db", fleet.db)
    sections = {part.split(":\n", 1)[0]: part for part in text.split("\n\n")}
    current = status_json(fleet)
    agents = parse_table(sections["agents"])
    assert [(row["agent"], row["status"], row["labels"]) for row in agents] == [
        (agent["id"], agent["status"], ",".join(agent["labels"])) for agent in current["agents"]
    ]
    labels = parse_table(sections["labels"])
    assert [(row["label"], row["agents online"]) for row in labels] == [
        (label["label"], str(label["agents_online"])) for label in current["labels"]
    ]
    campaigns = parse_table(sections["campaigns running"])
    assert [(row["campaign"], row["name"]) for row in campaigns] == [(campaign, "glance")]


def test_watch_prints_a_json_line_per_interval_until_ctrl_c(fleet, campaign, tmp_path):
    out = tmp_path / "watch.jsonl"
    with out.open("w") as sink:
        watch = subprocess.Popen(
            [BIN / "ofa-coord", "status", "--db", fleet.db, "--watch", "--interval", "0.3"]
            + ["--format", "json"],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: out.read_text().count("\n") >= 2, 60, "two status lines")
            watch.send_signal(signal.SIGINT)
            _, errors = watch.communicate(timeout=30)
        finally:
            if watch.poll() is None:
                watch.kill()
    assert watch.returncode == 0 and errors == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) >= 2
    assert all(set(line) == {"agents", "labels", "campaigns", "at"} for line in lines)
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)
    assert all(line["agents"][0]["id"] == fleet.agent_id("a") for line in lines)
