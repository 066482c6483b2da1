"""Campaigns end to end on loopback with real agents: each workload kind, the exported LUT
(read by the reference package), failures of agents and coordinator, cancel, bad specs.

The module's fleet is shared, so each test that exports a LUT measures for a device label of
its own (agent `a` serves them all): no test sees another's campaigns, and each runs alone
or in any order."""

from __future__ import annotations

import json
import math
import signal

import pytest
import yaml
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.lut_export import DRIFT_LIMIT
from coordinator.services.results_export import campaign_results
from ofa.config import SubnetConfig, sample_configs
from ofa.lut import LatencyTable
from ofa.plan import lut_keys, space_lut_specs
from ofa.zoo import config_from_json, lut_specs, sample_any
from tests.cli_output import campaign_id, cli
from tests.fleet import QUICK_FLAGS, Fleet, kill9, run_campaign, wait_for
from tests.oracle import run_reference


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("campaigns"))
    fleet.start_server()
    fleet.start_agent("a", labels=("cpu", "lut", "partial", "pool", "zoo"))
    fleet.start_agent("b", labels=("cpu2", "zoo"))
    fleet.agent_id("a"), fleet.agent_id("b")
    yield fleet
    fleet.close()


def test_lut_campaign_gives_a_complete_table_the_reference_reads(fleet, tmp_path):
    cid = run_campaign(
        fleet.db,
        "--name",
        "lut64",
        "--workload",
        "lut",
        "--resolutions",
        "64",
        "--repeats",
        "1",
        label="lut",
    )
    status = json.loads(cli("campaign", "status", "--db", fleet.db, cid, "--format", "json"))
    assert status["state"] == "done" and status["failed"] == 0
    assert status["total"] == 96 + 1 + 96 // 25  # entries, then the reference interleaved
    out = tmp_path / "lut"
    cli("lut", "export", "--db", fleet.db, "--device", "lut", "--out", out)
    (table_file,) = out.glob("*_lookup_table.yaml")
    assert table_file.name == "64_lookup_table.yaml"
    table = yaml.safe_load(table_file.read_text())
    assert set(table) == {spec.lut_key for spec in space_lut_specs(64, 1.0)}
    assert all(v["count"] >= 10 and v["mean"] > 0 for v in table.values())
    ours = LatencyTable.from_ofa_yaml(out)
    configs = sample_configs(3, seed=1, resolutions=(64,))
    reference = run_reference(
        {
            "width": 1.0,
            "lut_dir": str(out),
            "subnets": [{**c.to_dict(), "input": None} for c in configs],
        },
        tmp_path,
    )
    for config, theirs in zip(configs, reference["subnets"], strict=True):
        assert theirs["lut_keys_net"] == lut_keys(config)
        assert ours.predict_ms(config) == pytest.approx(theirs["lut_ms_net"], rel=1e-9)
    cli("lut", "export", "--db", fleet.db, "--device", "lut", "--out", out, "--format", "json")
    provenance = json.loads((out / "lut_lut.json").read_text())
    assert provenance["missing"] == []
    assert provenance["provenance"]["runtime_versions"][0]["onnxruntime"]
    assert provenance["provenance"]["campaigns"][0]["id"] == cid
    entry = next(iter(provenance["tables"]["64"].values()))
    assert {"median_ms", "p10_ms", "p90_ms", "n", "drift_flag"} <= set(entry)
    assert_drift_derived_from_the_reference_checks(fleet, cid, provenance["tables"]["64"])


def test_a_proxylessnas_lut_campaign_on_two_agents_gives_a_table_the_reference_reads(
    fleet, tmp_path
):
    cid = run_campaign(
        fleet.db,
        "--name",
        "proxyless64",
        "--workload",
        "lut",
        "--family",
        "proxyless",
        "--resolutions",
        "64",
        "--repeats",
        "1",
        label="zoo",
    )
    status = json.loads(cli("campaign", "status", "--db", fleet.db, cid, "--format", "json"))
    assert status["state"] == "done" and status["failed"] == 0
    assert status["total"] == 103 + 1 + 103 // 25  # ProxylessNAS has 103 entries per size
    rows = [row for row in campaign_results(fleet.store, cid) if row["kind"] == "lut"]
    assert {row["agent_id"] for row in rows} == {fleet.agent_id("a"), fleet.agent_id("b")}
    out = tmp_path / "lut"
    cli("lut", "export", "--db", fleet.db, "--device", "zoo", "--out", out, "--campaign", cid)
    table = yaml.safe_load((out / "64_lookup_table.yaml").read_text())
    assert set(table) == {spec.lut_key for spec in space_lut_specs(64, 1.3, "proxyless")}
    ours = LatencyTable.from_ofa_yaml(out)
    configs = sample_configs(3, seed=1, resolutions=(64,), w=1.3, family="proxyless")
    reference = run_reference(
        {
            "family": "proxyless",
            "width": 1.3,
            "proxyless_lut": str(out / "64_lookup_table.yaml"),
            "subnets": [{**c.to_dict(), "input": None} for c in configs],
        },
        tmp_path,
    )
    for config, theirs in zip(configs, reference["subnets"], strict=True):
        assert theirs["lut_keys_net"] == lut_keys(config)
        assert ours.predict_ms(config) == pytest.approx(theirs["lut_ms_net"], rel=1e-9)
    trained = CliRunner().invoke(
        coord, ["predictor", "train", "--db", fleet.db, "--device", "zoo", "--kind", "lut"]
    )
    assert trained.exit_code == 0, trained.output
    subnets = tmp_path / "subnets.jsonl"
    subnets.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in configs))
    predicted = json.loads(
        cli(
            "predictor",
            "predict",
            "--db",
            fleet.db,
            "--device",
            "zoo",
            "--kind",
            "lut",
            subnets,
            "--format",
            "json",
        )
    )
    for row, theirs in zip(predicted, reference["subnets"], strict=True):
        assert row["latency_ms"] == pytest.approx(theirs["lut_ms_net"], rel=1e-9)


def test_a_resnet50_lut_and_random_campaign_gives_a_table_covering_its_subnets(fleet, tmp_path):
    cid = run_campaign(
        fleet.db,
        "--name",
        "resnet64",
        "--workload",
        "lut+random",
        "--family",
        "resnet50",
        "--count",
        "2",
        "--resolutions",
        "64",
        "--repeats",
        "1",
        label="zoo",
    )
    status = json.loads(cli("campaign", "status", "--db", fleet.db, cid, "--format", "json"))
    assert status["state"] == "done" and status["failed"] == 0
    specs = lut_specs(64, 1.0, "resnet50")
    assert len(specs) == 163 and status["total"] == 163 + 2 + 1 + 165 // 25
    out = tmp_path / "lut"
    cli("lut", "export", "--db", fleet.db, "--device", "zoo", "--out", out, "--campaign", cid)
    table = yaml.safe_load((out / "64_lookup_table.yaml").read_text())
    assert set(table) == {spec.lut_key for spec in specs}
    ours = LatencyTable.from_ofa_yaml(out)
    rows = [row for row in campaign_results(fleet.store, cid) if row["kind"] == "subnet"]
    measured = {config_from_json(row["key"]) for row in rows}
    assert measured == set(sample_any(2, 0, (64,), 1.0, "resnet50"))
    for config in measured:  # every layer of a measured subnet has its entry
        assert ours.predict_ms(config) > 0


def assert_drift_derived_from_the_reference_checks(fleet: Fleet, cid: str, table: dict) -> None:
    """Each result's drift is its agent's last reference check, median / baseline - 1 (the
    baseline being the median of that agent's checks so far, so its first check reads 0),
    and an entry is flagged exactly when one of its results drifted by more than 3%."""
    rows = [
        row
        for row in campaign_results(fleet.store, cid)
        if row["accepted"] and row["kind"] == "lut"
    ]
    drifts: dict[str, list[float]] = {}
    for row in rows:
        check = row["drift_check"]
        median, baseline = check["median_ms"], check["baseline_median_ms"]
        assert math.isfinite(median) and math.isfinite(baseline) and median > 0 and baseline > 0
        assert row["drift"] == pytest.approx(median / baseline - 1, rel=1e-9, abs=1e-12)
        drifts.setdefault(row["key"], []).append(row["drift"])
    assert set(drifts) == set(table)
    first = fleet.store.db.execute(
        "SELECT drift, drift_check FROM results WHERE agent_id=? AND drift_check IS NOT NULL "
        "ORDER BY id LIMIT 1",
        (rows[0]["agent_id"],),
    ).fetchone()
    assert first["drift"] == 0 and json.loads(first["drift_check"])["baseline_median_ms"] > 0
    for key, entry in table.items():
        assert entry["drift_flag"] == any(abs(d) > DRIFT_LIMIT for d in drifts[key])


def test_random_campaign_measures_each_subnet_twice_on_each_device(fleet, tmp_path):
    cid = run_campaign(
        fleet.db,
        "--name",
        "rand",
        "--workload",
        "random",
        "--count",
        "3",
        "--resolutions",
        "64,96",
        "--seed",
        "5",
        "--label",
        "cpu2",
    )
    out = tmp_path / "results.jsonl"
    cli("results", "export", "--db", fleet.db, "--campaign", cid, "--format", "jsonl", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = {c.to_json() for c in sample_configs(3, 5, (64, 96))}
    agents = {"label:cpu": fleet.agent_id("a"), "label:cpu2": fleet.agent_id("b")}
    for target, agent in agents.items():
        mine = [r for r in rows if r["kind"] == "subnet" and r["target"] == target]
        assert len(mine) == 6 and {r["repeat"] for r in mine} == {0, 1}
        assert {r["key"] for r in mine} == expected and {r["agent_id"] for r in mine} == {agent}
    subnets = [r for r in rows if r["kind"] == "subnet"]
    for row in subnets:
        assert row["status"] == "ok" and row["accepted"] and len(row["samples_ns"]) == row["n"]
        assert row["telemetry_before"]["unix_time_ns"] > 0
        if row["drift"] is not None:  # the reference medians behind it, to audit it
            check = row["drift_check"]
            assert row["drift"] == pytest.approx(
                check["median_ms"] / check["baseline_median_ms"] - 1, rel=1e-6, abs=1e-9
            )
    assert any(r["drift"] is not None for r in subnets)
    assert any(r["kind"] == "reference" for r in rows)
    artifacts = fleet.store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0]
    again = run_campaign(
        fleet.db,
        "--name",
        "rand again",
        "--workload",
        "random",
        "--count",
        "3",
        "--resolutions",
        "64,96",
        "--seed",
        "5",
        "--repeats",
        "1",
    )
    assert fleet.store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == artifacts
    digests = lambda c: {item.digest for item in fleet.store.campaign_items(c)}  # noqa: E731
    assert digests(again) == digests(cid)  # built once, reused by the second campaign
    csv_text = cli("results", "export", "--db", fleet.db, "--campaign", cid, "--format", "csv")
    assert csv_text.splitlines()[0].startswith("campaign,target,agent_id,kind,key")
    assert len(csv_text.splitlines()) == len(rows) + 1


def test_configs_campaign_reads_jsonl_and_published_net_configs(fleet, tmp_path, assets):
    configs = [SubnetConfig.smallest(r=64), SubnetConfig.largest(r=64)]
    listing = tmp_path / "subnets.jsonl"
    listing.write_text("\n".join(c.to_json() for c in configs))
    cid = run_campaign(
        fleet.db,
        "--name",
        "cfg",
        "--workload",
        "configs",
        "--configs",
        listing,
        "--repeats",
        "1",
        "--reference-every",
        "0",
    )
    keys = {
        r["key"]
        for r in json.loads(
            "["
            + ",".join(
                cli(
                    "results", "export", "--db", fleet.db, "--campaign", cid, "--format", "jsonl"
                ).splitlines()
            )
            + "]"
        )
    }
    assert keys == {c.to_json() for c in configs}
    net = assets / "ofa_specialized/LG-G8_lat-8ms_top1-71.1_finetune-25/net.config"
    cid = run_campaign(
        fleet.db,
        "--name",
        "net",
        "--workload",
        "configs",
        "--configs",
        net,
        "--repeats",
        "1",
        "--reference-every",
        "0",
    )
    status = json.loads(cli("campaign", "status", "--db", fleet.db, cid, "--format", "json"))
    assert status["total"] == 1 and status["state"] == "done"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "nosuch", "--workload", "lut"], "no registered agent has label 'nosuch'"),
        (["--label", "cpu", "--workload", "lut", "--resolutions", "0"], "resolution 0 is outside"),
        (
            ["--label", "cpu", "--workload", "random", "--count", "-1"],
            "count: expected a positive number of subnets, got -1",
        ),
        (["--label", "cpu", "--workload", "configs", "--configs", "{bad}"], "not valid JSON"),
        (
            ["--label", "cpu", "--workload", "configs", "--configs", "{invalid}"],
            "entry 0: ks[0]: expected one of 3, 5, 7, got 9",
        ),
        (
            ["--label", "cpu", "--workload", "random", "--count", "2", "--repeats", "0"],
            "repeats: expected an integer >= 1, got 0",
        ),
        (["--workload", "lut"], "targets: give at least one --label or --agent"),
        (
            ["--label", "cpu", "--workload", "random", "--count", "2", "--max-ci", "2"],
            "settings.target_precision: expected a fraction below 1",
        ),
        (
            ["--label", "cpu", "--workload", "configs", "--configs", "/no/such/file.json"],
            "does not exist",
        ),
        (
            ["--label", "cpu", "--workload", "configs", "--configs", "{empty}"],
            "the configs workload has nothing to measure",
        ),
    ],
)
def test_bad_campaign_specs_are_refused_and_create_nothing(fleet, tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{ not json")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "invalid.json").write_text(
        json.dumps([{"ks": [9] * 20, "e": [3] * 20, "d": [2] * 5, "r": 64}])
    )
    args = [
        a.replace("{bad}", str(tmp_path / "bad.json"))
        .replace("{empty}", str(tmp_path / "empty.json"))
        .replace("{invalid}", str(tmp_path / "invalid.json"))
        for a in args
    ]
    before = len(fleet.store.list_campaigns())
    jobs = sum(fleet.store.job_counts().values())
    result = CliRunner().invoke(
        coord, ["campaign", "create", "--db", str(fleet.db), "--name", "bad", *args]
    )
    assert result.exit_code in (1, 2) and message in result.output
    assert len(fleet.store.list_campaigns()) == before
    assert sum(fleet.store.job_counts().values()) == jobs


def lut_export(fleet: Fleet, label: str, out, *args) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        coord,
        [
            "lut",
            "export",
            "--db",
            str(fleet.db),
            "--device",
            label,
            "--out",
            str(out),
            *map(str, args),
        ],
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_partial_lut_lists_what_is_missing_and_never_writes_it(fleet, tmp_path):
    """r=48 measured in full, then a campaign at 48 and 56 px cancelled as soon as it starts:
    the r=56 entries it never measured are missing from the device's LUT."""
    run_campaign(
        fleet.db,
        "--name",
        "full48",
        "--workload",
        "lut",
        "--resolutions",
        "48",
        "--repeats",
        "1",
        "--reference-every",
        "0",
        label="partial",
    )
    cut = campaign_id(
        cli(
            "campaign",
            "create",
            "--db",
            fleet.db,
            "--label",
            "partial",
            *QUICK_FLAGS,
            "--name",
            "cut",
            "--workload",
            "lut",
            "--resolutions",
            "48,56",
            "--repeats",
            "1",
            "--reference-every",
            "0",
            "--start",
        )
    )
    cli("campaign", "cancel", "--db", fleet.db, cut)
    expected = {(r, spec.lut_key) for r in (48, 56) for spec in space_lut_specs(r, 1.0)}

    code, stdout, stderr = lut_export(fleet, "partial", tmp_path / "json", "--format", "json")
    assert code == 1  # missing entries without --allow-missing
    exported = json.loads((tmp_path / "json" / "partial_lut.json").read_text())
    measured = {(int(r), key) for r, table in exported["tables"].items() for key in table}
    missing = {(m["r"], m["key"]) for m in exported["missing"]}
    assert measured | missing == expected and not measured & missing
    assert {(48, spec.lut_key) for spec in space_lut_specs(48, 1.0)} <= measured and missing
    assert f"{len(missing)} entries missing ({len(missing)} cancelled):" in stderr
    assert {m["reason"] for m in exported["missing"]} == {"cancelled"}
    listed = stderr.splitlines()[1 : 1 + min(20, len(missing))]  # the first 20 are listed
    assert len(listed) == min(20, len(missing))
    assert all(line.startswith("  r=56 ") for line in listed)
    more = [f"  ... and {len(missing) - 20} more"] if len(missing) > 20 else []
    assert stderr.splitlines()[1 + len(listed) :] == more
    assert f"{len(measured)} entries for partial" in stdout

    assert lut_export(fleet, "partial", tmp_path / "yaml", "--allow-missing")[0] == 0
    written = {}
    for path in (tmp_path / "yaml").glob("*_lookup_table.yaml"):
        r = int(path.name.split("_")[0])
        written.update({(r, key): v for key, v in yaml.safe_load(path.read_text()).items()})
    assert set(written) == measured  # no missing entry written, as zero or otherwise
    assert all(v["mean"] > 0 and v["count"] >= 10 for v in written.values())
    code, _, stderr = lut_export(fleet, "partial", tmp_path / "cut", "--campaign", cut)
    # cancelled at once, it measured a few entries or none (then nothing is exported)
    nothing = f"nothing exported for partial: none of the {len(expected)} entries campaign {cut}"
    assert code == 1 and ("cancelled):" in stderr or nothing in stderr)


def test_campaign_survives_agent_kill_and_coordinator_restart(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server()
        fleet.start_agent("a", labels=("cpu",))
        fleet.agent_id("a")
        cid = campaign_id(
            cli(
                "campaign",
                "create",
                "--db",
                fleet.db,
                "--label",
                "cpu",
                *QUICK_FLAGS,
                "--name",
                "robust",
                "--workload",
                "random",
                "--count",
                "8",
                "--resolutions",
                "64",
                "--start",
            )
        )
        wait_for(lambda: fleet.store.job_counts(cid).get("done", 0) >= 2, 60, "two results")
        kill9(fleet.agents["a"])
        port = fleet.port
        fleet.stop_server(signal.SIGKILL)
        fleet.start_server(port=port)
        fleet.start_agent("b", labels=("cpu",))
        cli("campaign", "wait", "--db", fleet.db, cid, "--timeout", "120", "--interval", "0.2")
        jobs = [
            r[0]
            for r in fleet.store.db.execute(
                "SELECT job_id FROM campaign_jobs WHERE campaign_id=?", (cid,)
            )
        ]
        for job in jobs:
            assert fleet.store.job(job)["state"] == "done"
            assert sum(r["accepted"] for r in fleet.store.results(job)) == 1
        assert len(jobs) == 16 + 1  # 8 subnets x 2 repeats, one reference
    finally:
        fleet.close()


def test_cancel_stops_handing_out_jobs(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server()
        fleet.start_agent("a", labels=("cpu",))
        fleet.agent_id("a")
        cid = campaign_id(
            cli(
                "campaign",
                "create",
                "--db",
                fleet.db,
                "--label",
                "cpu",
                "--name",
                "long",
                "--workload",
                "random",
                "--count",
                "20",
                "--resolutions",
                "64",
                "--min-time",
                "0.3",
                "--warmup-min-time",
                "0.01",
                "--start",
            )
        )
        wait_for(lambda: fleet.store.job_counts(cid).get("done", 0) >= 1, 60, "a first result")
        cli("campaign", "cancel", "--db", fleet.db, cid)
        leases = lambda: fleet.store.db.execute(  # noqa: E731
            "SELECT COUNT(*) FROM leases l JOIN jobs j ON j.id=l.job_id WHERE j.campaign=?", (cid,)
        ).fetchone()[0]
        issued = leases()
        # The positive signal: a job queued after the cancel is leased and done, so the agent
        # has asked for work since; none of the cancelled campaign's jobs may have been leased.
        (tmp_path / "one.json").write_text(SubnetConfig.smallest(r=48).to_json())
        after = campaign_id(
            cli(
                "campaign",
                "create",
                "--db",
                fleet.db,
                "--label",
                "cpu",
                *QUICK_FLAGS,
                "--name",
                "after",
                "--workload",
                "configs",
                "--configs",
                tmp_path / "one.json",
                "--repeats",
                "1",
                "--reference-every",
                "0",
                "--start",
            )
        )
        cli("campaign", "wait", "--db", fleet.db, after, "--timeout", "120", "--interval", "0.2")
        assert leases() == issued
        status = json.loads(cli("campaign", "status", "--db", fleet.db, cid, "--format", "json"))
        assert status["state"] == "cancelled" and status["targets"]["label:cpu"]["cancelled"] > 30
        listing = cli("campaign", "list", "--db", fleet.db)
        assert cid in listing and "cancelled" in listing
    finally:
        fleet.close()


def test_a_campaign_starts_once_and_wait_needs_it_started(fleet):
    cid = campaign_id(
        cli(
            "campaign",
            "create",
            "--db",
            fleet.db,
            "--label",
            "cpu",
            *QUICK_FLAGS,
            "--name",
            "once",
            "--workload",
            "random",
            "--count",
            "1",
            "--resolutions",
            "48",
            "--reference-every",
            "0",
            "--repeats",
            "1",
        )
    )
    waited = CliRunner().invoke(coord, ["campaign", "wait", "--db", str(fleet.db), cid])
    assert waited.exit_code == 1 and "has not been started" in waited.output
    assert "1 jobs queued" in cli("campaign", "start", "--db", fleet.db, cid)
    again = CliRunner().invoke(coord, ["campaign", "start", "--db", str(fleet.db), cid])
    assert again.exit_code == 1 and f"campaign {cid}: is running, not created" in again.output
    cli("campaign", "wait", "--db", fleet.db, cid, "--timeout", "60", "--interval", "0.2")
    assert fleet.store.job_counts(cid) == {"done": 1}


def test_lut_export_refuses_to_pool_results_of_different_settings(fleet, tmp_path):
    """Threads are part of the target (each is exported on its own); other settings that
    differ within one target are refused outright."""
    for threads, warmup in (("1", "2"), ("2", "2"), ("1", "3")):  # a few results each
        cid = campaign_id(
            cli(
                "campaign",
                "create",
                "--db",
                fleet.db,
                "--label",
                "pool",
                *QUICK_FLAGS,
                "--name",
                f"{threads} threads, {warmup} warm-up runs",
                "--workload",
                "lut",
                "--resolutions",
                "32",
                "--repeats",
                "1",
                "--reference-every",
                "0",
                "--threads",
                threads,
                "--warmup-runs",
                warmup,
                "--start",
            )
        )
        wait_for(
            lambda campaign=cid: fleet.store.job_counts(campaign).get("done", 0) >= 2,
            120,
            "two results",
        )
        cli("campaign", "cancel", "--db", fleet.db, cid)

    def export(*args: str):
        return CliRunner().invoke(
            coord,
            ["lut", "export", "--db", str(fleet.db), "--device", "pool", "--out", str(tmp_path)]
            + list(args),
        )

    two_targets = export()
    assert two_targets.exit_code == 1
    assert "span targets onnxruntime-cpu-fp32-b1-t1, onnxruntime-cpu-fp32-b1-t2" in (
        two_targets.output
    )
    mixed = export("--target", "onnxruntime-cpu-fp32-b1-t1")
    assert mixed.exit_code == 1 and "measured with different settings" in mixed.output
    assert "export one with --campaign" in mixed.output
    assert not list(tmp_path.iterdir())  # nothing written
    alone = export("--target", "onnxruntime-cpu-fp32-b1-t2", "--allow-missing")
    assert alone.exit_code == 0 and "on onnxruntime-cpu-fp32-b1-t2" in alone.output


def test_commands_refuse_a_database_that_does_not_exist(tmp_path):
    result = CliRunner().invoke(coord, ["devices", "--db", str(tmp_path / "typo.db")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "typo.db").exists()
