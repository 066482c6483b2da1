"""Per-node profiles: `ofa-agent bench --profile` on a real exported subnet, a campaign that
records them through a real agent, and `ofa-coord profile show` mapping every node to one of
OFA's layers and its LUT key."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from click.testing import CliRunner

from agent.cli import main as agent_main
from coordinator.services.campaigns import CampaignSpec, Devices
from coordinator.services.jobs import BenchOptions
from coordinator.services.profiles import OTHER, layer_scopes
from ofa.config import SubnetConfig
from ofa.nn.export import export_subnet
from tests.cli_output import cli
from tests.fleet import run_campaign
from tests.models import randomized_supernet

QUICK = ["--warmup-runs", "2", "--min-runs", "10", "--min-time", "0.05", "--max-ci", "0.5"]
MIXED = SubnetConfig(ks=(3, 5, 7) * 6 + (3, 5), e=(3, 4, 6) * 6 + (4, 6), d=(2, 3, 4, 2, 3), r=64)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """A subnet with every kind of layer (SE, h-swish, strides), its config, and what
    `ofa-agent bench --profile --format json` printed for it."""
    folder = tmp_path_factory.mktemp("profile")
    config = MIXED
    model, config_file = folder / "subnet.onnx", folder / "subnet.json"
    model.write_bytes(export_subnet(randomized_supernet(1.0, seed=1), config).onnx)
    config_file.write_text(config.to_json())
    result = CliRunner().invoke(
        agent_main, ["bench", str(model), "--profile", "--format", "json", *QUICK]
    )
    assert result.exit_code == 0, result.output
    out = folder / "bench.json"
    out.write_text(result.stdout)
    return config, config_file, out, json.loads(result.stdout)


def test_every_node_maps_to_a_layer_of_the_subnet(profiled):
    config, _, _, bench = profiled
    nodes = bench["profile"]["nodes"]
    scopes = layer_scopes(config)
    assert {node["scope"] for node in nodes} - {""} == set(scopes)  # every layer, no other
    # outside every layer: only what onnxruntime adds itself (layout reorders), no layer's op
    unscoped = {node["op_type"] for node in nodes if not node["scope"]}
    assert not unscoped & {"Conv", "Gemm", "GlobalAveragePool", "Mul", "ReduceMean"}
    assert all(node["mean_us"] >= 0 for node in nodes)
    convs = [node for node in nodes if node["op_type"] == "Conv"]
    assert len(convs) >= len(config.active_blocks) * 2  # depthwise and pointwise at least
    # kernel times leave out what runs between kernels, and were taken in another session
    # (beside other tests' load one was 2.7x the latency): their sum is of the order of the
    # latency, not a thousand times off as a unit error would make it
    kernels_ms = sum(node["mean_us"] for node in nodes) / 1000
    assert 0.1 < kernels_ms / bench["stats"]["median_ms"] < 10
    ops = {row["op_type"]: row for row in bench["profile"]["by_op_type"]}
    assert ops["Conv"]["nodes"] == len(convs)
    assert sum(row["share"] for row in ops.values()) == pytest.approx(1)


def test_profile_show_puts_each_layer_beside_its_lut_entry(profiled, tmp_path):
    config, config_file, bench_file, bench = profiled
    keys = [spec.lut_key for spec in layer_scopes(config).values()]
    lut = tmp_path / "lut"
    lut.mkdir()
    table = {key: {"count": 1, "mean": 0.5 + i, "std": 0.0} for i, key in enumerate(keys)}
    (lut / f"{config.r}_lookup_table.yaml").write_text(yaml.safe_dump(table))
    show = ("profile", "show", bench_file, "--config", config_file)
    shown = json.loads(cli(*show, "--lut", lut, "--format", "json"))
    layers = {row["layer"]: row for row in shown["layers"]}
    for scope, spec in layer_scopes(config).items():
        assert layers[scope]["lut_key"] == spec.lut_key
        assert layers[scope]["lut_ms"] == table[spec.lut_key]["mean"]
    assert set(layers) - set(layer_scopes(config)) <= {OTHER}
    assert sum(row["share"] for row in shown["layers"]) == pytest.approx(1)
    total_us = sum(node["mean_us"] for node in bench["profile"]["nodes"])
    assert sum(row["profiled_ms"] for row in shown["layers"]) == pytest.approx(total_us / 1000)
    text = cli(*show)
    assert f"subnet {config.id} by layer:" in text and "by operator type:" in text
    assert "blocks.1" in text and "Conv" in text and "LUT ms" in text


def test_a_profile_of_another_subnet_or_a_damaged_one_is_refused_in_one_line(profiled, tmp_path):
    config, _, bench_file, bench = profiled
    other = tmp_path / "other.json"
    other.write_text(SubnetConfig.smallest(r=64).to_json())
    said = cli("profile", "show", bench_file, "--config", other, expect=1)
    assert "are not layers of subnet" in said and "another subnet" in said
    assert len(said.strip().splitlines()) == 1
    bench["profile"]["nodes"][3]["mean_us"] = -1
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(bench))
    said = cli("profile", "show", damaged, "--config", profiled[1], expect=1)
    assert "profile: nodes[3].mean_us: expected a finite number >= 0" in said
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"stats": bench["stats"]}))
    said = cli("profile", "show", plain, "--config", profiled[1], expect=1)
    assert "ofa-agent bench --profile" in said


def test_a_campaign_with_profile_records_them_and_profile_show_reads_its_results(fleet, tmp_path):
    fleet.start_agent("a")
    fleet.agent_id("a")
    configs = tmp_path / "configs.jsonl"
    configs.write_text(MIXED.to_json() + "\n" + SubnetConfig.smallest(r=64).to_json() + "\n")
    cid = run_campaign(
        fleet.db, "--name", "p", "--workload", "configs", "--configs", configs, "--profile"
    )

    def export_results(out, fmt):
        cli("results", "export", "--db", fleet.db, "--campaign", cid, "--format", fmt, "--out", out)

    export = tmp_path / "results.jsonl"
    export_results(export, "jsonl")
    records = [json.loads(line) for line in export.read_text().splitlines()]
    subnets = [r for r in records if r["kind"] == "subnet"]
    assert len(subnets) == 4 and all(r["accepted"] for r in subnets)  # 2 subnets x 2 repeats
    for record in subnets:
        config = SubnetConfig.from_json(record["key"])
        assert record["profile"]["runs"] >= 1
        assert {n["scope"] for n in record["profile"]["nodes"]} - {""} == set(layer_scopes(config))
    assert all(not r["profile"] for r in records if r["kind"] == "reference")  # not asked for
    said = cli("profile", "show", export, expect=1)  # two subnets: which one?
    assert "subnet: the results hold profiles of 2 subnets" in said and "--subnet" in said
    shown = json.loads(cli("profile", "show", export, "--subnet", MIXED.id, "--format", "json"))
    assert shown["subnet"] == MIXED.id
    assert {row["layer"] for row in shown["layers"]} - {OTHER} == set(layer_scopes(MIXED))
    # the two repeats' profiles are averaged node by node
    mine = [r["profile"]["nodes"] for r in subnets if r["key"] == MIXED.to_json()]
    both = sum(n["mean_us"] for nodes in mine for n in nodes) / 2
    assert sum(row["profiled_ms"] for row in shown["layers"]) == pytest.approx(both / 1000)
    said = cli("profile", "show", export, "--subnet", "0" * 12, expect=1)
    assert "no accepted subnet result with a profile for subnet 000000000000" in said
    # a profile that failed on the device says why, and is passed over, not fatal
    failed = dict(subnets[0], profile={"runs": 0, "nodes": [], "error": "OSError: disk full"})
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(json.dumps(r) for r in [failed, *subnets]) + "\n\n")
    again = json.loads(cli("profile", "show", mixed, "--subnet", MIXED.id, "--format", "json"))
    assert again == shown
    csv_export = tmp_path / "results.csv"
    export_results(csv_export, "csv")
    assert "profile" not in csv_export.read_text().splitlines()[0].split(",")
    said = cli("profile", "show", csv_export, expect=1)
    assert "a CSV export holds no profiles; export with --format jsonl" in said


def test_profile_needs_onnxruntime_and_its_results_name_their_subnet(fleet, tmp_path):
    fleet.start_agent("a")
    fleet.agent_id("a")
    spec = CampaignSpec(
        name="t",
        targets=(Devices(label="cpu"),),
        workload="random",
        count=1,
        resolutions=(64,),
        options=BenchOptions(runtime="torch"),
        profile=True,
    )
    with pytest.raises(ValueError, match="profile: per-node profiles come from onnxruntime"):
        spec.validate(fleet.store)
    with pytest.raises(ValueError, match="profile: only whole subnets are profiled"):
        replace(spec, workload="lut", options=BenchOptions()).validate(fleet.store)
    export = tmp_path / "r.jsonl"
    export.write_text(json.dumps({"kind": "subnet", "accepted": True, "key": "{}"}) + "\n")
    said = cli("profile", "show", export, "--config", export, expect=2)
    assert "--config: campaign results name their subnets" in said
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"profile": {"nodes": []}}, indent=1))
    said = cli("profile", "show", bench, "--subnet", "abc", expect=2)
    assert "--subnet, --target: they pick among campaign results" in said
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "subnet"}) + "\n\n[1, 2\n")
    said = cli("profile", "show", bad, expect=1)
    assert f"{bad}:3: not valid JSON" in said and len(said.strip().splitlines()) == 1
