"""Waiting on a campaign with a real fleet: the commands say when no online agent serves a
target, `campaign wait` exits 1 on --timeout, 2 when jobs failed or were cancelled and 130 on
Ctrl-C (the campaign keeps running), and `specialize --verify` cancels its campaign when it
gives up."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.predictor_data import predictor_path
from coordinator.services.targets import Target
from ofa.config import SubnetConfig
from ofa.latency_model import BlockTable, fit_predictor
from ofa.lut import LatencyTable
from tests.fleet import BIN, QUICK_FLAGS, Fleet, kill9, wait_for

UNSERVED = re.compile(r"no online agent has label (\S+) \(last seen \d+ (s|min) ago\)")


def invoke(*args):
    return CliRunner().invoke(coord, [str(a) for a in args], catch_exceptions=False)


def offline(fleet: Fleet, label: str) -> bool:
    agents = [a for a in fleet.store.list_agents() if label in a["labels"]]
    return bool(agents) and not any(a["online"] for a in agents)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A running coordinator whose one agent (labels pi-sim and note10) registered and then
    stopped, so both labels are known and served by no one."""
    fleet = Fleet(tmp_path_factory.mktemp("wait"))
    fleet.start_server()
    agent = fleet.start_agent("gone", labels=("pi-sim", "note10"))
    fleet.agent_id("gone")
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=60)
    wait_for(lambda: offline(fleet, "pi-sim"), 60, "the stopped agent to be marked offline")
    yield fleet
    fleet.close()


def create(fleet: Fleet, tmp_path, name: str, label: str, *extra) -> tuple[str, object]:
    configs = tmp_path / f"{name}.jsonl"
    configs.write_text(SubnetConfig.smallest(r=48).to_json() + "\n")
    result = invoke(
        "campaign",
        "create",
        "--db",
        fleet.db,
        "--name",
        name,
        "--label",
        label,
        "--workload",
        "configs",
        "--configs",
        configs,
        "--reference-every",
        "0",
        *QUICK_FLAGS,
        *extra,
        "--start",
    )
    assert result.exit_code == 0, result.output
    return result.stdout.split()[1], result


def test_start_and_wait_say_no_online_agent_serves_the_label_and_time_out(fleet, tmp_path):
    cid, created = create(fleet, tmp_path, "unserved", "pi-sim")
    assert UNSERVED.search(created.stderr).group(1) == "pi-sim", created.stderr
    waited = invoke(
        "campaign", "wait", "--db", fleet.db, cid, "--timeout", "1", "--interval", "0.2"
    )
    assert waited.exit_code == 1, waited.output
    assert "waiting: no online agent has label pi-sim (last seen" in waited.stderr
    assert "timed out after 1 s; the campaign keeps running" in waited.stderr
    status = json.loads(
        invoke("campaign", "status", "--db", fleet.db, cid, "--format", "json").stdout
    )
    assert status["state"] == "running" and status["finished"] == 0


def test_wait_exits_2_when_jobs_failed_or_were_cancelled(fleet, tmp_path):
    doomed = fleet.start_agent("doomed", labels=("doomed",))
    fleet.agent_id("doomed")
    cid, _ = create(
        fleet,
        tmp_path,
        "doomed",
        "doomed",
        "--max-attempts",
        "1",
        "--repeats",
        "3",
        "--min-time",
        "1",
    )
    leased = lambda: fleet.store.db.execute(  # noqa: E731
        "SELECT COUNT(*) FROM leases l JOIN jobs j ON j.id=l.job_id WHERE j.campaign=?", (cid,)
    ).fetchone()[0]
    wait_for(leased, 60, "the agent to lease a job")
    kill9(doomed)  # its lease is its only attempt: the job fails when the agent goes offline
    wait_for(lambda: fleet.store.job_counts(cid).get("failed"), 60, "the job to fail")
    assert invoke("campaign", "cancel", "--db", fleet.db, cid).exit_code == 0
    waited = invoke("campaign", "wait", "--db", fleet.db, cid, "--interval", "0.2")
    assert waited.exit_code == 2, waited.output
    assert "failed: " in waited.stdout and "(attempt 1 of 1)" in waited.stdout
    counts = fleet.store.job_counts(cid)
    assert counts["failed"] >= 1 and sum(counts.values()) == 3
    assert set(counts) <= {"failed", "cancelled", "done"}


def test_ctrl_c_on_wait_says_the_campaign_keeps_running_and_exits_130(fleet, tmp_path):
    cid, _ = create(fleet, tmp_path, "interrupted", "pi-sim")
    process = subprocess.Popen(
        [
            str(BIN / "ofa-coord"),
            "campaign",
            "wait",
            "--db",
            str(fleet.db),
            cid,
            "--interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert cid in process.stdout.readline()  # the first progress line: it is waiting
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert (
        f"campaign {cid} keeps running; to stop it: ofa-coord campaign cancel --db "
        f"{fleet.db} {cid}" in stderr
    )
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert fleet.store.job_counts(cid) == {"queued": 2}


def test_verify_gives_up_after_its_timeout_and_cancels_its_campaign(fleet, tmp_path, assets):
    lut = LatencyTable.from_ofa_yaml(assets / "note10").means()
    fit_predictor("lut", BlockTable.from_lut(lut, 1.2)).save(
        predictor_path(fleet.db, "note10", "lut", Target().name)
    )
    result = invoke(
        "specialize",
        "--db",
        fleet.db,
        "--device",
        "note10",
        "--kind",
        "lut",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        "30",
        "--generations",
        "5",
        "--verify",
        "--verify-timeout",
        "1",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 1, result.output
    assert "verify: waiting: no online agent has label note10 (last seen" in result.stderr
    error = result.stderr.splitlines()[-1]
    cid = re.search(
        r"verify: campaign (c[0-9a-f]{8}) not finished after 1 s, so it was "
        r"cancelled",
        error,
    ).group(1)
    assert error.startswith("ofa-coord: error: ") and "no online agent has label note10" in error
    status = json.loads(
        invoke("campaign", "status", "--db", fleet.db, cid, "--format", "json").stdout
    )
    assert status["state"] == "cancelled" and status["targets"]["label:note10"] == {
        "cancelled": status["total"]
    }
