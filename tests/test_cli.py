"""The command lines: `ofa-coord sample|describe|export|demo` and `ofa-agent bench`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from agent.cli import main as agent_main
from agent.measure import BenchSettings
from coordinator.cli.app import main as coord_main
from coordinator.state import Store
from ofa.config import SubnetConfig, sample_configs
from ofa.lut import LatencyTable
from ofa.nn.accuracy_training import AccuracyPairs, TrainSettings, fit_accuracy_predictor
from ofa.plan import count_macs, lut_keys


def invoke(main, *args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_both_entry_points_print_help():
    for main, words in (
        (
            coord_main,
            [
                "serve",
                "token",
                "devices",
                "campaign",
                "results",
                "lut",
                "sample",
                "describe",
                "export",
                "demo",
                "accuracy",
                "assets",
                "specialize",
                "predictor",
            ],
        ),
        (agent_main, ["run", "info", "bench"]),
    ):
        result = invoke(main, "--help")
        assert result.exit_code == 0 and all(w in result.output for w in words)


def test_measurement_settings_say_the_engine_defaults():
    """Both command lines take the settings from one table; the defaults come from
    BenchSettings, and a job's 0 is said to mean them."""
    defaults = BenchSettings()
    create = " ".join(invoke(coord_main, "campaign", "create", "--help").output.split())
    bench = " ".join(invoke(agent_main, "bench", "--help").output.split())
    assert f"(then on until stable). 0: the agent's default ({defaults.warmup_runs})" in create
    assert f"even if imprecise. 0: the agent's default ({defaults.max_time_s:g} s)" in create
    assert "--threads INTEGER Threads to measure with. 0: each agent's own --threads" in create
    assert "--provider TEXT" in create and "Unset: the runtime's CPU" in create
    assert "--runtime [onnxruntime|torch]" in create and "--runtime [onnxruntime|torch]" in bench
    assert f"[default: {defaults.min_runs}]" in bench and "95% CI" in bench
    result = CliRunner().invoke(agent_main, ["bench", __file__, "--min-runs", "0"])
    assert result.exit_code == 1 and "min_runs: expected an integer >= 1" in result.output


def test_sample_prints_valid_jsonl_and_refuses_bad_resolutions():
    result = invoke(
        coord_main, "sample", "-n", 3, "--seed", 4, "--resolutions", "160,224", "--width", "1.2"
    )
    configs = [SubnetConfig.from_json(line) for line in result.output.splitlines()]
    assert len(configs) == 3 and all(c.w == 1.2 and c.r in (160, 224) for c in configs)
    bad = CliRunner().invoke(coord_main, ["sample", "--resolutions", "0"])
    assert bad.exit_code == 2 and "resolution 0 is outside 32..1024" in bad.output
    bad = CliRunner().invoke(coord_main, ["sample", "-n", "-1"])
    assert bad.exit_code == 2 and "-1" in bad.output


def test_describe_reads_a_published_net_config(assets):
    path = assets / "ofa_specialized/flops-389M_top1-79.1_finetune-75/net.config"
    info = json.loads(invoke(coord_main, "describe", path, "--format", "json").output)
    config = SubnetConfig.from_file(path)
    assert info["id"] == config.id and info["macs"] == count_macs(config)
    assert info["lut_keys"] == lut_keys(config)
    text = invoke(coord_main, "describe", path).output
    assert re.search(r"^MACs +389.5 M$", text, re.M)


def test_describe_and_export_read_a_published_proxylessnas_net(assets, tmp_path):
    path = assets / "ofa_specialized/cpu_lat-10ms_top1-71.1_finetune-25/net.config"
    config = SubnetConfig.from_file(path)
    info = json.loads(invoke(coord_main, "describe", path, "--format", "json").output)
    assert info["config"]["family"] == "proxyless" and info["lut_keys"] == lut_keys(config)
    assert info["lut_keys"][1].endswith("-expand:1-kernel:3-stride:1-idskip:0")  # no se/hs
    assert "ProxylessNAS" in invoke(coord_main, "describe", path).output
    invoke(coord_main, "export", path, "--out", tmp_path, "--lut-entries")
    (model,) = tmp_path.glob(f"{config.id}-*.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, config.r, config.r), np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 1000)
    index = json.loads((tmp_path / "lut/index.json").read_text())
    logits = index[lut_keys(config)[-1]]  # ProxylessNAS's Logits entry pools its input
    assert logits["input_shape"] == [1, 1664, 5, 5]
    sampled = invoke(coord_main, "sample", "-n", "2", "--family", "proxyless").output
    assert all(SubnetConfig.from_json(line).w == 1.3 for line in sampled.splitlines())
    wrong = CliRunner().invoke(coord_main, ["sample", "--family", "proxyless", "--width", "1.2"])
    assert wrong.exit_code == 1
    assert "width: expected one of (1.3,) for proxyless, got 1.2" in wrong.output


def test_describe_names_the_bad_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ks": [9] * 20, "e": [3] * 20, "d": [2] * 5, "r": 224}))
    result = CliRunner().invoke(coord_main, ["describe", str(bad)])
    assert result.exit_code == 1 and "ks[0]: expected one of 3, 5, 7, got 9" in result.output


def test_export_writes_the_subnet_and_its_lut_entries(tmp_path):
    config = SubnetConfig.smallest(r=96)
    (tmp_path / "c.json").write_text(config.to_json())
    result = invoke(
        coord_main, "export", tmp_path / "c.json", "--out", tmp_path / "out", "--lut-entries"
    )
    models = list((tmp_path / "out").glob(f"{config.id}-*.onnx"))
    assert len(models) == 1 and "sha256" in result.output
    session = ort.InferenceSession(str(models[0]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 96, 96]
    index = json.loads((tmp_path / "out/lut/index.json").read_text())
    assert set(index) == set(lut_keys(config))
    assert all((tmp_path / "out/lut" / e["file"]).is_file() for e in index.values())
    invoke(coord_main, "export", tmp_path / "c.json", "--out", tmp_path / "again")
    assert (tmp_path / "again" / models[0].name).is_file()  # seeded: the same bytes each time


QUICK_BENCH = ("--min-runs", "5", "--min-time", "0", "--max-time", "1", "--warmup-min-time", "0")


def test_export_writes_a_targets_models_that_agent_bench_times(tmp_path):
    """The same files a campaign for the target measures, timed off the fleet."""
    config = SubnetConfig.smallest(r=64)
    (tmp_path / "c.json").write_text(config.to_json())
    out = tmp_path / "int8"
    result = invoke(
        coord_main,
        "export",
        tmp_path / "c.json",
        "--out",
        out,
        "--precision",
        "int8",
        "--batch",
        "2",
        "--lut-entries",
    )
    assert "input 2x3x64x64 int8" in result.output
    (model,) = out.glob(f"{config.id}-*.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, 64, 64]
    assert any(node.op_type == "QuantizeLinear" for node in _onnx_nodes(model))
    index = json.loads((out / "lut" / "index.json").read_text())
    assert {entry["input_shape"][0] for entry in index.values()} == {2}
    timed = json.loads(invoke(agent_main, "bench", model, *QUICK_BENCH, "--format", "json").output)
    assert timed["stats"]["n"] >= 5
    wrong = CliRunner().invoke(agent_main, ["bench", str(model), "--input-shape", "1,3,64,64"])
    assert wrong.exit_code == 1 and "the model takes [2, 3, 64, 64]" in wrong.output

    out = tmp_path / "torch"
    invoke(
        coord_main,
        "export",
        tmp_path / "c.json",
        "--out",
        out,
        "--runtime",
        "torch",
        "--precision",
        "fp16",
        "--batch",
        "2",
    )
    (script,) = out.glob(f"{config.id}-*.pt")
    bench = ["bench", str(script), "--runtime", "torch", *QUICK_BENCH]
    unshaped = CliRunner().invoke(agent_main, bench)
    assert unshaped.exit_code == 1 and "--input-shape" in unshaped.output
    timed = json.loads(
        invoke(agent_main, *bench, "--input-shape", "2,3,64,64", "--format", "json").output
    )
    assert timed["stats"]["n"] >= 5 and "torch" in timed["runtime_versions"]


def _onnx_nodes(path: Path):
    import onnx

    return onnx.load(str(path)).graph.node


def test_export_refuses_a_target_that_cannot_be(tmp_path):
    (tmp_path / "c.json").write_text(SubnetConfig.smallest().to_json())
    for flags, message in (
        (["--runtime", "torch", "--precision", "int8"], "precision: int8 models are onnxruntime"),
        (["--batch", "0"], "Invalid value for '--batch'"),
    ):
        result = CliRunner().invoke(
            coord_main, ["export", str(tmp_path / "c.json"), "--out", str(tmp_path), *flags]
        )
        assert result.exit_code != 0 and message in result.output, result.output
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.onnx"))


def test_export_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    import torch

    from ofa.nn.supernet import OFAMobileNetV3

    (tmp_path / "c.json").write_text(SubnetConfig.smallest().to_json())
    partial = {
        "first_conv.conv.weight": torch.zeros(16, 3, 3, 3),
        "classifier.linear.weight": torch.zeros(1000, 1280),
    }
    for state, message in (
        ({"x": torch.zeros(1)}, "not an OFA supernet checkpoint"),
        (partial, "missing (473)"),
        (
            OFAMobileNetV3(1.2).state_dict(),
            "is a subnet of ofa_mbv3_d234_e346_k357_w1.0, not of ofa_mbv3_d234_e346_k357_w1.2",
        ),
    ):
        torch.save({"state_dict": state}, tmp_path / "bad.pth")
        result = CliRunner().invoke(
            coord_main,
            [
                "export",
                str(tmp_path / "c.json"),
                "--out",
                str(tmp_path),
                "--checkpoint",
                str(tmp_path / "bad.pth"),
            ],
        )
        assert result.exit_code == 1 and message in result.output


def test_agent_bench_reports_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    result = CliRunner().invoke(agent_main, ["bench", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "cannot be measured" in result.output


def _macs_accuracy_predictor(path: Path) -> None:
    """A predictor trained on a stand-in for top-1 that grows with MACs: enough to check
    that the demo searches with it (no ImageNet evaluation here)."""
    configs = sample_configs(300, seed=4, resolutions=(64,))
    macs = np.array([count_macs(c) for c in configs], float)
    pairs = AccuracyPairs(tuple(configs), 0.5 + 0.3 * macs / macs.max())
    fit_accuracy_predictor(pairs, TrainSettings(epochs=40)).save(path)


def lut_sum_over_measured(table: LatencyTable, db: Path, campaign: str) -> list[float]:
    """Per subnet of `campaign`: its LUT sum over the median of its measurements."""
    rows = [
        json.loads(line)
        for line in invoke(
            coord_main, "results", "export", "--db", db, "--campaign", campaign, "--format", "jsonl"
        ).output.splitlines()
    ]
    measured: dict[str, list[float]] = {}
    for row in rows:
        if row["kind"] == "subnet" and row["accepted"]:
            measured.setdefault(row["key"], []).append(row["median_ms"])
    assert measured and all(len(v) == 2 for v in measured.values())  # --repeats 2
    return [
        table.predict_ms(SubnetConfig.from_json(key)) / float(np.median(values))
        for key, values in measured.items()
    ]


@pytest.mark.serial  # its agents judge disturbance: beside other tests they re-measure a lot
def test_demo_profiles_two_device_classes_and_specialises_each(tmp_path):
    _macs_accuracy_predictor(tmp_path / "acc.npz")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator",
            "demo",
            "--resolutions",
            "64",
            "--subnets",
            "2",
            "--repeats",
            "2",
            "--min-time",
            "0.02",
            "--warmup-time",
            "0.01",
            "--acc-predictor",
            str(tmp_path / "acc.npz"),
            "--run-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )  # a hang guard only
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = tmp_path.glob("demo-*")
    summary = json.loads((run / "summary.json").read_text())
    assert [d["label"] for d in summary["devices"]] == ["cpu-1t", "cpu-2t"]
    for device in summary["devices"]:
        assert device["lut_entries"] == 96 and device["lut_missing"] == 0
        assert device["subnets"] == 2 and device["lut_repeat_spread"] is not None
        table = LatencyTable.from_ofa_yaml(run / f"lut-{device['label']}")
        assert table.resolutions == [64]
        # The LUT sum over the measured latency depends on the machine's load (a loaded run
        # gave 0.2), so it is recomputed from the exported table and results, not bounded.
        ratios = lut_sum_over_measured(table, run / "fleet.db", device["random_campaign"])
        assert device["lut_sum_over_measured"] == pytest.approx(
            {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)}, rel=1e-9
        )
        assert device["label"] in done.stdout
    threads = {a["threads"] for a in Store(run / "fleet.db").list_agents()}
    assert threads == {1, 2}
    assert "Wall time" in done.stdout
    chosen = summary["specialised"]
    assert [row["label"] for row in chosen] == ["cpu-1t", "cpu-1t", "cpu-2t", "cpu-2t"]
    for row in chosen:
        assert row["latency_ms"] <= row["budget_ms"] and row["measured_ms"] > 0
        budget = f"{row['budget_ms']:g}ms"
        assert (run / "specialised" / row["label"] / budget / "subnet.json").is_file()
    assert chosen[0]["accuracy"] < chosen[1]["accuracy"]  # more time buys accuracy
    assert "specialised: the most accurate subnet" in done.stdout


def test_token_commands_show_the_secret_once_and_store_only_its_hash(tmp_path):
    db = tmp_path / "fleet.db"
    create = ("token", "create", "--db", db, "--name")
    secret = invoke(coord_main, *create, "pixel7-1", "--label", "pixel7").output.strip()
    assert secret.startswith("ofa_")
    assert (
        secret.encode() not in db.read_bytes()
        and secret not in invoke(coord_main, "token", "list", "--db", db).output
    )
    again = CliRunner().invoke(
        coord_main, ["token", "create", "--db", str(db), "--name", "pixel7-1", "--any-label"]
    )
    assert again.exit_code == 1 and "a token named 'pixel7-1' exists already" in again.output
    invoke(coord_main, *create, "pi", "--any-label", "--out", tmp_path / "pi.tok")
    assert (tmp_path / "pi.tok").stat().st_mode & 0o777 == 0o600
    assert "revoked" in invoke(coord_main, "token", "revoke", "--db", db, "--name", "pi").output
    invoke(coord_main, *create, "two", "--label", "b", "--label", "a")
    listing = invoke(coord_main, "token", "list", "--db", db).output
    assert re.search(r"^pixel7-1 +active +pixel7 ", listing, re.M)
    assert re.search(r"^pi +revoked +any ", listing, re.M)
    assert re.search(r"^two +active +a,b ", listing, re.M)
    listed = json.loads(invoke(coord_main, "token", "list", "--db", db, "--format", "json").output)
    assert [t["labels"] for t in listed] == [["pixel7"], "any", ["a", "b"]]
    missing = CliRunner().invoke(coord_main, ["token", "revoke", "--db", str(db), "--name", "nope"])
    assert missing.exit_code == 1 and "no active token named 'nope'" in missing.output


@pytest.mark.parametrize("labels", [(), ("--label", "cpu", "--any-label")])
def test_token_create_needs_exactly_one_of_label_and_any_label(tmp_path, labels):
    db = tmp_path / "fleet.db"
    result = CliRunner().invoke(
        coord_main, ["token", "create", "--db", str(db), "--name", "t", *labels]
    )
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "--label" in line and "--any-label" in line
    assert not db.exists() or Store(db).list_tokens() == []


def test_token_create_refuses_a_malformed_label(tmp_path):
    db = tmp_path / "fleet.db"
    result = CliRunner().invoke(
        coord_main, ["token", "create", "--db", str(db), "--name", "t", "--label", "pixel 7"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ofa-coord: error: label: expected 1-64 characters of A-Z a-z 0-9 . _ -, got 'pixel 7'"
    )
    assert Store(db).list_tokens() == []


def test_devices_lists_registered_agents(tmp_path):
    db = tmp_path / "fleet.db"
    store = Store(db)
    assert "no agents have registered" in invoke(coord_main, "devices", "--db", db).output
    store.create_token("t")
    token = store.token_by_secret(
        invoke(
            coord_main, "token", "create", "--db", db, "--name", "u", "--label", "rpi4"
        ).output.strip()
    )
    agent = store.register_agent(
        token, "", ["rpi4"], {"machine": "aarch64", "cpu_model": "Cortex-A72"}, 4, "0.1"
    )
    table = invoke(coord_main, "devices", "--db", db).output
    assert agent in table and "online" in table and "rpi4" in table and "aarch64" in table
    listed = json.loads(invoke(coord_main, "devices", "--db", db, "--format", "json").output)
    assert listed[0]["id"] == agent and listed[0]["jobs_done"] == 0
