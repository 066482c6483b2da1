"""`ofa-coord specialize` with the authors' accuracy predictor and Note10 tables, or a
device's stored latency predictor."""

from __future__ import annotations

import csv
import json
import re
import shutil
from xml.etree import ElementTree

import numpy as np
import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.predictor_data import predictor_path
from coordinator.services.predictors import predictor_file
from coordinator.services.results_export import campaign_results
from coordinator.services.targets import Target
from coordinator.state import Devices, Store
from ofa.config import SubnetConfig, sample_configs
from ofa.latency_model import BlockTable, fit_predictor, load_predictor
from ofa.lut import LatencyTable
from ofa.plan import count_macs, count_params, space_lut_specs


def run(*args, expect: int = 0) -> str:
    result = CliRunner().invoke(coord, ["specialize", *map(str, args)])
    assert result.exit_code == expect, result.output
    return result.output


def test_budgets_and_front_from_the_note10_tables(assets, tmp_path):
    out = run(
        "--lut",
        assets / "note10",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        "25",
        "--pareto",
        "20:40:3",
        "--generations",
        "30",
        "--out",
        tmp_path,
    )
    assert re.search(r"^ +25 +0\.\d{4} ", out, re.M)  # the 25 ms budget's row and its top-1
    tables = LatencyTable.from_ofa_yaml(assets / "note10")
    rows = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    assert [float(r["budget_ms"]) for r in rows] == [20, 25, 30, 40]
    accuracies = [float(r["accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies) and accuracies[1] > 0.8144  # the reference's best
    for row in rows:
        config = SubnetConfig.from_file(tmp_path / f"{float(row['budget_ms']):g}ms" / "subnet.json")
        assert config.w == 1.2 and tables.predict_ms(config) <= float(row["budget_ms"])
    result = json.loads((tmp_path / "25ms" / "result.json").read_text())
    assert result["latency_model"]["kind"] == "lut"
    assert result["config"]["r"] in (160, 176, 192, 208, 224)
    svg = ElementTree.parse(tmp_path / "pareto.svg").getroot()  # well-formed, one point per budget
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == len(rows)
    # the whole front: monotone, and each budget's choice is its best point within budget
    front = list(csv.DictReader((tmp_path / "front.csv").open()))
    latencies = [float(point["latency_ms"]) for point in front]
    top1 = [float(point["accuracy"]) for point in front]
    assert latencies == sorted(latencies) and top1 == sorted(set(top1))
    for row in rows:
        within = [a for a, ms in zip(top1, latencies, strict=True) if ms <= float(row["budget_ms"])]
        assert float(row["accuracy"]) == pytest.approx(max(within))
    assert SubnetConfig.from_json(front[0]["config"]).r in (160, 176, 192, 208, 224)


def test_a_devices_stored_predictor_and_a_macs_budget(assets, tmp_path):
    db = tmp_path / "fleet.db"
    Store(db)
    tables = LatencyTable.from_ofa_yaml(assets / "note10")
    lut = tables.means()
    fit_predictor("lut", BlockTable.from_lut(lut, 1.2)).save(
        predictor_path(db, "note10", "lut", Target().name)
    )
    run(
        "--db",
        db,
        "--device",
        "note10",
        "--kind",
        "lut",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        "40",
        "--max-macs",
        "300",
        "--generations",
        "20",
        "--out",
        tmp_path / "out",
    )
    config = SubnetConfig.from_file(tmp_path / "out" / "40ms" / "subnet.json")
    assert count_macs(config) <= 300e6
    search = ["--acc-predictor", assets / "acc_predictor.pth", "--latency-ms", "40"]
    b8 = Target(batch=8).name
    out = run(*search, "--db", db, "--device", "note10", "--kind", "lut", "--target", b8,
              "--out", tmp_path / "b8", expect=1)  # fmt: skip
    assert f"has no predictor on {b8}; it has some on {Target().name}" in out
    out = run(*search, "--lut", assets / "note10", "--target", b8, "--out", tmp_path / "x",
              expect=2)  # fmt: skip
    assert "--target goes with --device" in out
    predictor_path(db, "note10", "lut", b8).parent.mkdir()
    predictor_path(db, "note10", "lut", Target().name).rename(
        predictor_path(db, "note10", "lut", b8)
    )
    predictor_path(db, "note10", "lut", Target(batch=2).name).parent.mkdir()
    shutil.copy(predictor_path(db, "note10", "lut", b8),
                predictor_path(db, "note10", "lut", Target(batch=2).name))  # fmt: skip
    scenario = {"device": "note10", "kind": "lut", "latency_ms": [40]}
    (tmp_path / "s.json").write_text(json.dumps([scenario]))
    out = run(*search[:2], "--db", db, "--scenarios", tmp_path / "s.json", "--out",
              tmp_path / "s", expect=1)  # fmt: skip
    assert "has predictors on" in out and "name one with a 'target' field" in out
    (tmp_path / "s.json").write_text(json.dumps([{**scenario, "target": b8}]))
    out = run(*search[:2], "--db", db, "--scenarios", tmp_path / "s.json", "--out", tmp_path / "s")
    assert (tmp_path / "s" / "note10" / "40ms" / "subnet.json").is_file()


def test_parameter_and_size_budgets_hold_and_an_impossible_one_names_itself(assets, tmp_path):
    """The w1.2 space holds 4.60M (smallest) to 10.70M parameters; the Note10 LUT folder has
    no target, so sizes are of fp32 weights (4 bytes each)."""
    budgets = {"--max-params": 6.0, "--max-size-mb": 22.0}
    for option, limit in budgets.items():
        out = tmp_path / option.strip("-")
        run(
            "--lut",
            assets / "note10",
            "--acc-predictor",
            assets / "acc_predictor.pth",
            "--latency-ms",
            "40",
            option,
            limit,
            "--generations",
            "3",
            "--out",
            out,
        )
        params = count_params(SubnetConfig.from_file(out / "40ms" / "subnet.json"))
        assert params <= (limit if option == "--max-params" else limit / 4) * 1e6
        assert params > 4.7e6  # the budget binds above the smallest subnet: a real search
    said = run(
        "--lut",
        assets / "note10",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        "40",
        "--max-size-mb",
        "10",
        "--out",
        tmp_path / "no",
        expect=1,
    )
    assert (
        "max_size_mb: no subnet is within 10 MB of fp32 weights; the smallest reachable "
        "is 18.41" in said
    )


def test_the_budget_tables_sum_as_the_layer_plan_counts():
    from coordinator.services.specialise import Limit, feasibility
    from ofa.batch import ConfigBatch

    configs = sample_configs(20, 3, (160, 224), 1.2)
    for figure, count in (("params", count_params), ("macs", count_macs)):
        exact = np.array([count(c) for c in configs], dtype=float)
        limit = float(np.median(exact))
        within = feasibility([Limit("x", figure, limit, 1.0, "")], (160, 224), 1.2)
        assert within is not None
        assert within(ConfigBatch.from_configs(configs)).tolist() == (exact <= limit).tolist()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--latency-ms", "5"], "the fastest reachable is 9.89 ms"),
        (["--latency-ms", "25", "--resolutions", "200"], "has no table for [200]"),
        ([], "give --latency-ms"),
        (["--latency-ms", "25", "--pareto", "1:2"], "expected MIN:MAX:COUNT"),
    ],
)
def test_mistakes_are_explained(assets, tmp_path, args, message):
    result = CliRunner().invoke(
        coord,
        [
            "specialize",
            "--lut",
            str(assets / "note10"),
            "--acc-predictor",
            str(assets / "acc_predictor.pth"),
            "--out",
            str(tmp_path),
            *args,
        ],
    )
    assert result.exit_code in (1, 2) and message in result.output


def test_a_latency_model_of_another_width_is_refused(assets, tmp_path):
    db = tmp_path / "fleet.db"
    Store(db)
    lut = {160: {spec.lut_key: 1.0 for spec in space_lut_specs(160, 1.0)}}
    fit_predictor("lut", BlockTable.from_lut(lut, 1.0)).save(
        predictor_path(db, "w10", "lut", Target().name)
    )
    result = CliRunner().invoke(
        coord,
        [
            "specialize",
            "--db",
            str(db),
            "--device",
            "w10",
            "--kind",
            "lut",
            "--acc-predictor",
            str(assets / "acc_predictor.pth"),
            "--latency-ms",
            "50",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert "latency model is for w1.0 subnets, the accuracy predictor for w1.2" in result.output


def test_proxylessnas_is_specialised_on_its_lut_with_an_accuracy_predictor_of_its_own(
    assets, tmp_path
):
    """OFA publishes no ProxylessNAS accuracy predictor: one is trained here (`accuracy
    train`) on made-up pairs, top-1 growing with log MACs, standing in for what `train
    accuracy-dataset` measures on a trained ProxylessNAS supernet. The LUT is made up too:
    each entry's latency proportional to its MACs."""
    lut = tmp_path / "lut"
    lut.mkdir()
    for r in (160, 224):
        (lut / f"{r}_lookup_table.yaml").write_text(
            "".join(
                f"{spec.lut_key}:\n  count: 5\n  mean: {0.02 + spec.macs() / 1e8!r}\n"
                for spec in space_lut_specs(r, 1.3, "proxyless")
            )
        )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {"config": c.to_dict(), "accuracy": 0.5 + 0.03 * np.log(count_macs(c) / 1e8)}
            )
            + "\n"
            for c in sample_configs(400, 7, (160, 224), w=1.3, family="proxyless")
        )
    )
    trained = CliRunner().invoke(
        coord,
        ["accuracy", "train", "--data", str(pairs), "--out", str(tmp_path / "acc.npz")]
        + ["--epochs", "200"],
    )
    assert trained.exit_code == 0 and "(ofa_proxyless_d234_e346_k357_w1.3," in trained.output
    out = tmp_path / "out"
    searched = CliRunner().invoke(
        coord,
        ["specialize", "--acc-predictor", str(tmp_path / "acc.npz"), "--lut", str(lut),
         "--latency-ms", "3", "--latency-ms", "6", "--latency-ms", "12", "--format", "json",
         "--out", str(out)],
    )  # fmt: skip
    assert searched.exit_code == 0, searched.output
    rows = json.loads(searched.stdout)
    table = LatencyTable.from_ofa_yaml(lut)
    for row in rows:
        result = json.loads((out / f"{row['budget_ms']:g}ms" / "result.json").read_text())
        config = SubnetConfig.from_dict(result["config"])
        assert (config.family, config.w, len(config.ks)) == ("proxyless", 1.3, 21)
        assert row["latency_ms"] == pytest.approx(table.predict_ms(config))
        assert row["latency_ms"] <= row["budget_ms"] and config.r == row["r"] in (160, 224)
        assert (row["macs"], row["id"]) == (count_macs(config), config.id)
    top1 = [row["accuracy"] for row in rows]
    assert top1 == sorted(top1) and top1[0] < top1[-1]
    mismatched = run("--acc-predictor", assets / "acc_predictor.pth", "--lut", lut,
                     "--latency-ms", 6, "--out", tmp_path / "none", expect=1)  # fmt: skip
    assert (
        "family: the latency model is for subnets of ofa_proxyless_d234_e346_k357_w1.3, the "
        "accuracy predictor for ofa_mbv3_d234_e346_k357_w1.2"
    ) in mismatched
    assert not (tmp_path / "none").exists()


def test_scenarios_run_many_budgets_and_sources_into_one_table(assets, tmp_path):
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(
        json.dumps(
            [
                {"lut": str(assets / "note10"), "name": "note10", "latency_ms": [20, 30]},
                {"lut": str(assets / "note10"), "name": "note10-again", "latency_ms": [25]},
            ]
        )
    )
    search = ["--scenarios", scenarios, "--acc-predictor", assets / "acc_predictor.pth"]
    out = run(*search, "--generations", "20", "--jobs", "2", "--out", tmp_path / "out")
    assert "3 scenario(s) in" in out and "note10-again" in out
    run(*search, "--generations", "20", "--jobs", "1", "--out", tmp_path / "alone")
    table = (tmp_path / "out" / "scenarios.csv").read_text()
    assert table == (tmp_path / "alone" / "scenarios.csv").read_text()  # side by side or not
    rows = list(csv.DictReader((tmp_path / "out" / "scenarios.csv").open()))
    assert [(r["scenario"], float(r["budget_ms"])) for r in rows] == [
        ("note10", 20.0),
        ("note10", 30.0),
        ("note10-again", 25.0),
    ]
    assert (tmp_path / "out" / "note10" / "30ms" / "subnet.json").is_file()
    assert (tmp_path / "out" / "note10-again" / "front.csv").is_file()
    impossible = {"lut": str(assets / "note10"), "name": "slow", "latency_ms": [5]}
    scenarios.write_text(json.dumps([json.loads(scenarios.read_text())[0], impossible]))
    said = run(*search, "--jobs", "2", "--out", tmp_path / "no", expect=1)
    assert "scenario slow: latency_ms: no subnet meets 5 ms; the fastest reachable is 9.89" in said
    scenarios.write_text(json.dumps([{"lut": "x", "device": "y", "latency_ms": [1]}]))
    bad = CliRunner().invoke(
        coord,
        [
            "specialize",
            "--scenarios",
            str(scenarios),
            "--acc-predictor",
            str(assets / "acc_predictor.pth"),
            "--out",
            str(tmp_path),
        ],
    )
    assert bad.exit_code == 1 and "scenario 0: give exactly one of 'lut' or 'device'" in bad.output


def test_verify_measures_the_chosen_subnet_on_the_device(assets, tmp_path):
    from ofa.latency_model import load_predictor
    from ofa.search import fastest_configs
    from tests.cli_output import cli
    from tests.fleet import W12_AT_160, cpu_fleet, run_campaign

    fleet = cpu_fleet(tmp_path / "fleet")
    try:
        run_campaign(
            fleet.db,
            "--name",
            "w12",
            "--workload",
            "lut",
            *W12_AT_160,
            "--batch",  # a target of its own: --verify measures on the predictor's target
            "2",
        )
        cli("predictor", "train", "--db", fleet.db, "--device", "cpu", "--kind", "lut")
        model = load_predictor(predictor_file(fleet.db, "cpu", "lut"))
        budget = round(2 * float(model.predict(fastest_configs([160], 1.2))[0]), 2)
        out = run(
            "--db",
            fleet.db,
            "--device",
            "cpu",
            "--kind",
            "lut",
            "--acc-predictor",
            assets / "acc_predictor.pth",
            "--latency-ms",
            budget,
            "--generations",
            "10",
            "--verify",
            "--out",
            tmp_path / "out",
        )
        assert "predicted" in out and "measured" in out
        assert "verifying on cpu, onnxruntime-cpu-fp32-b2: campaign" in out
        (row,) = list(csv.DictReader((tmp_path / "out" / "verify.csv").open()))
        chosen = SubnetConfig.from_file(tmp_path / "out" / f"{budget:g}ms" / "subnet.json")
        assert row["id"] == chosen.id
        # Predicted: the LUT sum of the chosen subnet over the device's exported table.
        cli("lut", "export", "--db", fleet.db, "--device", "cpu", "--out", tmp_path / "lut")
        lut_sum = LatencyTable.from_ofa_yaml(tmp_path / "lut").predict_ms(chosen)
        assert float(row["predicted_ms"]) == pytest.approx(lut_sum, abs=5e-4)  # 3 decimals
        assert lut_sum <= budget
        # Measured: the median of the device's two measurements of exactly that subnet, as
        # the verify campaign's raw results say. How far it lies from the LUT sum depends on
        # the machine's load (a loaded run measured 5x the LUT sum), so no margin is imposed
        # between the two; error_pct must be their relative difference.
        ((verify, spec),) = fleet.store.db.execute(
            "SELECT id, spec FROM campaigns WHERE name LIKE 'verify cpu %'"
        ).fetchall()
        assert json.loads(spec)["batch"] == 2
        results = [
            json.loads(line)
            for line in cli(
                "results", "export", "--db", fleet.db, "--campaign", verify, "--format", "jsonl"
            ).splitlines()
        ]
        medians = [r["median_ms"] for r in results if r["accepted"] and r["status"] == "ok"]
        assert [r["key"] for r in results] == [chosen.to_json()] * 2 and len(medians) == 2
        measured = float(np.median(medians))
        assert float(row["measured_ms"]) == pytest.approx(measured, abs=5e-4)
        # error_pct is printed with 1 decimal, from figures printed here with 3
        assert float(row["error_pct"]) == pytest.approx(
            100 * (lut_sum - measured) / measured, abs=0.05 + 100 * 1e-3 / measured
        )
    finally:
        fleet.close()


def test_the_fleet_is_specialised_verified_and_written_to_one_manifest(assets, tmp_path):
    """Two devices (two agents), each with its LUT and `lut` predictor; one command
    searches both, measures every pick on its device and writes the manifest, whose
    measured latencies are those of the verify campaigns and whose errors compare them with
    the predictions."""
    from coordinator.services.deployment import MANIFEST
    from ofa.search import fastest_configs
    from tests.cli_output import cli
    from tests.fleet import Fleet, run_campaign

    fleet = Fleet(tmp_path / "fleet")
    fleet.folder.mkdir()
    try:
        fleet.start_server()
        for name in ("fa", "fb"):
            fleet.start_agent(name, labels=(name,))
            fleet.agent_id(name)
        for name in ("fa", "fb"):
            run_campaign(
                fleet.db,
                "--name",
                name,
                "--workload",
                "lut",
                "--width",
                "1.2",
                "--resolutions",
                "160",
                "--repeats",
                "1",
                "--reference-every",
                "0",
                label=name,
            )
            cli("predictor", "train", "--db", fleet.db, "--device", name, "--kind", "lut")
        budgets = {}
        for name in ("fa", "fb"):
            model = load_predictor(predictor_file(fleet.db, name, "lut"))
            budgets[name] = round(2 * float(model.predict(fastest_configs([160], 1.2))[0]), 2)
        (tmp_path / "budgets.json").write_text(
            json.dumps(
                {"fa": [budgets["fa"]], "fb": {"latency_ms": [budgets["fb"]], "kind": "lut"}}
            )
        )
        out = run(
            "--db",
            fleet.db,
            "--fleet",
            tmp_path / "budgets.json",
            "--acc-predictor",
            assets / "acc_predictor.pth",
            "--generations",
            "3",
            "--verify",
            "--out",
            tmp_path / "out",
        )
        assert f"deployment manifest -> {tmp_path / 'out' / MANIFEST}" in out
        picks = json.loads((tmp_path / "out" / MANIFEST).read_text())["picks"]
        assert [(p["device"], p["budget_ms"]) for p in picks] == [
            ("fa", budgets["fa"]),
            ("fb", budgets["fb"]),
        ]
        for pick in picks:
            assert pick["target"]["name"] == "onnxruntime-cpu-fp32-b1"
            assert pick["predictor"]["kind"] == "lut" and pick["latency_ms"] <= pick["budget_ms"]
            (verify,) = [
                c.id
                for c in fleet.store.list_campaigns()
                if c.name.startswith(f"verify {pick['device']} ")
            ]
            medians = [
                r["median_ms"]
                for r in campaign_results(fleet.store, verify)
                if r["accepted"] and r["status"] == "ok"
            ]
            assert pick["measured_ms"] == pytest.approx(float(np.median(medians)))
            assert pick["error_pct"] == pytest.approx(
                100 * (pick["latency_ms"] - pick["measured_ms"]) / pick["measured_ms"]
            )
            assert SubnetConfig.from_dict(pick["config"]).id == pick["id"]
    finally:
        fleet.close()


@pytest.mark.parametrize(
    ("budgets", "message"),
    [
        ({}, "expected an object of device label -> budgets"),
        ({"a b": [10]}, "expected device labels as keys"),
        ({"pi": []}, "pi: latency_ms: expected a list of 1-1000 positive budgets"),
        ({"pi": [10, -1]}, "pi: latency_ms: expected a list"),
        ({"pi": {"latency_ms": [10], "kind": "best"}}, "pi: kind: expected one of"),
        ({"pi": {"latency_ms": [10], "kinds": "lut"}}, "pi: unknown field(s) kinds"),
        ({"nosuch": [10]}, "no predictor trained for 'nosuch'"),
    ],
)
def test_a_bad_fleet_file_is_refused(assets, tmp_path, budgets, message):
    Store(tmp_path / "fleet.db")
    (tmp_path / "budgets.json").write_text(json.dumps(budgets))
    said = run(
        "--db",
        tmp_path / "fleet.db",
        "--fleet",
        tmp_path / "budgets.json",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--out",
        tmp_path / "out",
        expect=1,
    )
    assert message in said


def test_a_supernet_checkpoint_gives_each_subnets_weights_and_onnx(assets, tmp_path):
    import numpy as np
    import onnxruntime as ort
    import torch

    from ofa.nn.checkpoint import load_checkpoint, save_checkpoint
    from ofa.nn.layers import build_network
    from ofa.nn.supernet import OFAMobileNetV3
    from ofa.plan import layer_plan

    torch.manual_seed(0)
    supernet = OFAMobileNetV3(1.2).eval()
    save_checkpoint(supernet, tmp_path / "supernet.pth")
    run(
        "--lut",
        assets / "note10",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        "20",
        "--generations",
        "5",
        "--supernet",
        tmp_path / "supernet.pth",
        "--out",
        tmp_path / "out",
    )
    folder = tmp_path / "out" / "20ms"
    config = SubnetConfig.from_file(folder / "subnet.json")
    static = build_network(layer_plan(config)).eval()
    load_checkpoint(static, folder / "subnet.pth")
    x = torch.randn(1, 3, config.r, config.r)
    with torch.no_grad():
        expected = supernet(x, config).numpy()
        assert np.abs(static(x).numpy() - expected).max() < 1e-4
    session = ort.InferenceSession(str(folder / "subnet.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-3

    save_checkpoint(OFAMobileNetV3(1.0), tmp_path / "narrow.pth")
    out = run(
        "--lut",
        assets / "note10",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        "20",
        "--supernet",
        tmp_path / "narrow.pth",
        "--out",
        tmp_path / "x",
        expect=1,
    )
    assert (
        "supernet: the checkpoint is ofa_mbv3_d234_e346_k357_w1.0, the latency model is for "
        "subnets of ofa_mbv3_d234_e346_k357_w1.2"
    ) in out


def test_a_configs_campaign_carries_its_subnets_in_the_spec(tmp_path):
    """What `--verify` and the demo measure: subnets held in memory, stored in the spec (no
    file to read back); specs stored before the field existed still load."""
    from coordinator.services.campaigns import CampaignSpec

    store = Store(tmp_path / "fleet.db")
    store.register_agent(store.token_by_secret(store.create_token("t")), "", ["cpu"], {}, 1, "t")
    small, large = SubnetConfig.smallest(r=160), SubnetConfig.largest(r=160)
    spec = CampaignSpec(
        name="chosen",
        targets=(Devices(label="cpu"),),
        workload="configs",
        subnets=(small.to_json(), large.to_json(), small.to_json()),
    )
    assert [item.key for item in spec.validate(store)] == [small.to_json(), large.to_json()]
    assert CampaignSpec.from_json(spec.to_json()) == spec
    before = json.loads(spec.to_json())
    del before["subnets"]
    assert CampaignSpec.from_json(json.dumps(before)).subnets == ()
    for subnets, message in (
        ((small.to_json().replace(",", ", "),), "subnets[0]: expected a subnet's canonical JSON"),
        (("{",), "subnets[0]: "),
        ((7,), "subnets[0]: expected a subnet's"),
    ):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            CampaignSpec(
                name="bad", targets=(Devices(label="cpu"),), workload="configs", subnets=subnets
            ).validate(store)
    with pytest.raises(ValueError, match="subnets: only the configs workload"):
        CampaignSpec(
            name="bad",
            targets=(Devices(label="cpu"),),
            workload="random",
            count=1,
            subnets=(small.to_json(),),
        ).validate(store)
    with pytest.raises(ValueError, match="subnets: expected a list"):
        CampaignSpec.from_json(json.dumps({**before, "subnets": "x"}))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"device": 7, "latency_ms": [1]}, "scenario 0: device: expected a non-empty string"),
        (
            {"lut": "x", "kind": "magic", "latency_ms": [1]},
            "scenario 0: kind: expected one of lut,",
        ),
        ({"lut": "x", "latency_ms": [0]}, "scenario 0: latency_ms: expected a list of positive"),
        (
            {"lut": "x", "name": "a/b", "latency_ms": [1]},
            "scenario 0: name: expected a folder name",
        ),
        (
            {"lut": "x", "name": "n" * 256, "latency_ms": [1]},  # past a file name's 255 bytes
            "scenario 0: name: expected a folder name",
        ),
    ],
)
def test_a_bad_scenario_is_refused_naming_its_field(tmp_path, entry, message):
    from coordinator.services.specialise import read_scenarios

    (tmp_path / "s.json").write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match=message):
        read_scenarios(tmp_path / "s.json")
