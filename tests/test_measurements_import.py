"""`measurements import`: latencies measured elsewhere become a device's end-to-end data
(JSONL and CSV alike), on which `predictor train|eval|predict` and `specialize --device` work
as on fleet data; a file with one bad line is refused with its number and imports nothing.

The measurements are generated: OFA's Note10 LUT sum of each subnet times a seeded 2%
log-normal noise, each subnet twice (as a campaign's repeats)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.predictor_data import measured_subnets
from coordinator.services.predictors import predictor_file
from coordinator.state import Store
from ofa.config import SubnetConfig, sample_configs
from ofa.latency_model import load_predictor
from ofa.lut import LatencyTable

TARGET = "onnxruntime-nnapi-int8-b1"
SUBNETS = 120
# Share of held-out subnets the structure predictor gets within +-10% on such data: 0.82-0.99
# over 8 seeds of the subnets and the noise (RMSE 4.9-7.0%; about 80 training subnets). A
# fit that learned nothing scores far below.
WITHIN_10_ABOVE = 0.7


def cli(*args, expect: int = 0) -> str:
    result = CliRunner().invoke(coord, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result.output


@pytest.fixture(scope="module")
def lines(assets) -> list[dict]:
    table = LatencyTable.from_ofa_yaml(assets / "note10")
    rng = np.random.default_rng(3)
    configs = sample_configs(SUBNETS, 11, (160, 176, 192, 208, 224), 1.2)
    return [
        {
            "config": config.to_dict(),
            "latency_ms": table.predict_ms(config) * float(np.exp(rng.normal(0, 0.02))),
            "phone": "pixel-x",
            "repeat": repeat,
        }
        for repeat in (0, 1)
        for config in configs
    ]


def import_file(db, *args, expect: int = 0) -> str:
    """`ofa-coord measurements import --db DB ARGS`."""
    return cli("measurements", "import", "--db", db, *args, expect=expect)


def predict(db, config_file) -> list[dict]:
    """`predictor predict` of phone's structure predictor, as JSON."""
    return json.loads(
        cli(
            "predictor",
            "predict",
            "--db",
            db,
            "--device",
            "phone",
            "--kind",
            "structure",
            config_file,
            "--format",
            "json",
        )
    )


def write_jsonl(path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def test_imported_data_train_evaluate_predict_and_specialize(lines, assets, tmp_path):
    db, data = tmp_path / "fleet.db", tmp_path / "phone.jsonl"
    write_jsonl(data, lines)
    said = import_file(db, "--device", "phone", "--target", TARGET, "--file", data)
    assert said.startswith(
        f"imported {2 * SUBNETS} measurements of {SUBNETS} subnets for phone on {TARGET} as i"
    )
    said = cli("predictor", "train", "--db", db, "--device", "phone", "--kind", "structure")
    assert f"structure predictor for phone on {TARGET} from" in said
    metrics = json.loads(
        cli("predictor", "eval", "--db", db, "--device", "phone", "--format", "json")
    )
    scores = {row["predictor"]: row for row in metrics}
    assert scores["structure"]["within_10pct"] >= WITHIN_10_ABOVE
    assert scores["noise floor"]["n"] >= SUBNETS // 4  # the repeats give the floor
    config = tmp_path / "one.json"
    config.write_text(json.dumps(lines[0]["config"]))
    predicted = predict(db, config)
    model = load_predictor(predictor_file(db, "phone", "structure"))
    assert predicted[0]["latency_ms"] == pytest.approx(
        float(model.predict([SubnetConfig.from_dict(lines[0]["config"])])[0]), rel=1e-9
    )
    assert model.provenance["target"]["name"] == TARGET
    budget = float(np.median([x["latency_ms"] for x in lines]))
    cli(
        "specialize",
        "--db",
        db,
        "--device",
        "phone",
        "--kind",
        "structure",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--latency-ms",
        budget,
        "--generations",
        "3",
        "--out",
        tmp_path / "out",
    )
    (chosen,) = (tmp_path / "out").glob("*ms/subnet.json")
    model_ms = predict(db, chosen)
    assert model_ms[0]["latency_ms"] <= budget
    listed = json.loads(cli("measurements", "list", "--db", db, "--format", "json"))
    assert [(i["label"], i["target"], i["lines"]) for i in listed] == [
        ("phone", TARGET, 2 * SUBNETS)
    ]
    again = import_file(db, "--device", "phone", "--target", TARGET, "--file", data, expect=1)
    assert "already imported for phone on this target" in again


def test_a_device_measured_on_both_mbconv_families(lines, tmp_path):
    """ProxylessNAS subnets imported beside MobileNetV3 ones: a predictor is scored on the
    subnets of its own supernet, and training on both at once is refused naming them."""
    db, data, more = tmp_path / "fleet.db", tmp_path / "mbv3.jsonl", tmp_path / "px.jsonl"
    write_jsonl(data, lines)
    import_file(db, "--device", "phone", "--target", TARGET, "--file", data)
    cli("predictor", "train", "--db", db, "--device", "phone", "--kind", "structure")
    before = json.loads(
        cli("predictor", "eval", "--db", db, "--device", "phone", "--format", "json")
    )
    proxyless = sample_configs(30, 4, (160, 224), 1.3, "proxyless")
    write_jsonl(
        more, [{"config": c.to_dict(), "latency_ms": 5.0 + i} for i, c in enumerate(proxyless)]
    )
    import_file(db, "--device", "phone", "--target", TARGET, "--file", more)
    after = json.loads(
        cli("predictor", "eval", "--db", db, "--device", "phone", "--format", "json")
    )
    assert after[0]["predictor"] == "structure" and after[0] == before[0]  # MobileNetV3's only
    cli("predictor", "eval", "--db", db, "--device", "phone", "--plot", tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    refused = cli("predictor", "train", "--db", db, "--device", "phone", "--kind", "structure",
                  expect=1)  # fmt: skip
    assert (
        "subnets: the training subnets span supernets ofa_mbv3_d234_e346_k357_w1.2, "
        "ofa_proxyless_d234_e346_k357_w1.3"
    ) in refused and "Traceback" not in refused


def test_csv_and_jsonl_import_alike(lines, tmp_path):
    db = tmp_path / "fleet.db"
    write_jsonl(tmp_path / "a.jsonl", lines)
    with (tmp_path / "a.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["config", "latency_ms", "phone", "repeat"])
        writer.writeheader()
        writer.writerows({**x, "config": json.dumps(x["config"])} for x in lines)
    for device, name in (("a", "a.jsonl"), ("b", "a.csv")):
        import_file(db, "--device", device, "--target", TARGET, "--file", tmp_path / name)
    store = Store(db)
    assert measured_subnets(store, "a") == measured_subnets(store, "b")
    assert len(measured_subnets(store, "a")) == SUBNETS


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "3: not valid JSON"),
        ({"latency_ms": 2.0}, "3: config: missing"),
        (
            {"config": {"ks": [3], "e": [3], "d": [2], "r": 160}, "latency_ms": 2.0},
            "3: config.d: expected 5 entries",
        ),
        ({"latency_ms": -3.0}, "3: latency_ms: expected a finite number of milliseconds"),
        ({"latency_ms": "2.5"}, "3: latency_ms: expected a number, got '2.5'"),
        ({"latency_ms": float("nan")}, "3: latency_ms: expected a finite number"),
        ({"latency_ms": 10**400}, "3: latency_ms: expected a finite number of milliseconds"),
        ({"latency_ms": True}, "3: latency_ms: expected a number, got True"),
        ({"latency_ms": 2.0, "note": float("inf")}, "3: metadata: expected finite numbers"),
        ([1, 2], "3: expected an object with config and latency_ms"),
    ],
)
def test_a_bad_line_is_refused_with_its_number_and_nothing_is_imported(
    lines, tmp_path, bad, message
):
    good = lines[0]
    if isinstance(bad, dict) and "config" not in bad and bad != {"latency_ms": 2.0}:
        bad = {"config": good["config"], **bad}
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [good, lines[1], bad, lines[2]])
    db = tmp_path / "fleet.db"
    said = import_file(db, "--device", "phone", "--target", TARGET, "--file", path, expect=1)
    assert f"{path}:{message}" in said and len(said.strip().splitlines()) == 1
    assert Store(db).list_imports() == [] and Store(db).imported("phone") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "phone", "--target", "cpu"], "target: expected RUNTIME-PROVIDER"),
        (["--device", "phone", "--target", "tvm-cpu-fp32-b1"], "the runtime is onnxruntime"),
        (["--device", "a b", "--target", TARGET], "device: expected a label"),
    ],
)
def test_a_bad_device_or_target_is_refused(lines, tmp_path, args, message):
    path = tmp_path / "ok.jsonl"
    write_jsonl(path, lines[:2])
    said = import_file(tmp_path / "f.db", *args, "--file", path, expect=1)
    assert message in said


def test_spreadsheet_csv_and_unusual_characters_import(lines, tmp_path):
    """A byte-order mark and CRLF line ends (a spreadsheet's "CSV UTF-8"), spaces after the
    commas of the header, and a metadata string holding U+2028 (a line break to
    str.splitlines, not to JSON lines) are all read as meant."""
    db = tmp_path / "fleet.db"
    rows = ["config, latency_ms, note"] + [
        '"' + json.dumps(x["config"]).replace('"', '""') + f'",{x["latency_ms"]},lab'
        for x in lines[:4]
    ]
    (tmp_path / "sheet.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    (tmp_path / "odd.jsonl").write_text(
        "".join(json.dumps({**x, "note": "a\u2028b"}, ensure_ascii=False) + "\n" for x in lines[:4])
    )
    for device, name in (("sheet", "sheet.csv"), ("odd", "odd.jsonl")):
        said = import_file(db, "--device", device, "--target", TARGET, "--file", tmp_path / name)
        assert said.startswith("imported 4 measurements of 4 subnets"), said
    assert measured_subnets(Store(db), "sheet") == measured_subnets(Store(db), "odd")


def test_a_csv_without_the_columns_is_named(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("config,latency_ms,config\n{},1,{}\n")
    said = import_file(
        tmp_path / "f.db", "--device", "p", "--target", TARGET, "--file", path, expect=1
    )
    assert "the header names config more than once" in said
    path.write_text("cfg,ms\n{},1\n")
    said = import_file(
        tmp_path / "f.db", "--device", "p", "--target", TARGET, "--file", path, expect=1
    )
    assert "missing config, latency_ms" in said
