"""`ofa-coord predictor train|eval|predict` on real measurements from a real fleet."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from coordinator.cli import main as coord
from coordinator.predictor_data import measured_subnets, predictor_path, split
from ofa.config import SubnetConfig
from tests.fleet import Fleet
from tests.test_campaigns import QUICK, campaign_id, cli


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("predictors"))
    fleet.start_server()
    fleet.start_agent("a", labels=("cpu",))
    fleet.start_agent("b", labels=("cpu2",), extra=("--threads", "2"))
    fleet.agent_id("a"), fleet.agent_id("b")
    for args in (["--label", "cpu", "--workload", "lut+random", "--count", "15"],
                 ["--label", "cpu2", "--workload", "random", "--count", "9"]):
        cid = campaign_id(cli("campaign", "create", "--db", fleet.db, "--name", args[1], *QUICK,
                              "--resolutions", "64", "--seed", "3", *args, "--start"))
        cli("campaign", "wait", "--db", fleet.db, cid, "--timeout", "300", "--interval", "0.2")
    yield fleet
    fleet.close()


def test_train_eval_and_predict_for_a_device(measured, tmp_path):
    db = measured.db
    for kind in ("lut", "lut-corrected", "lut-ridge"):
        out = cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", kind)
        assert f"{kind} predictor for cpu" in out and "noise floor" in out
        saved = json.loads(predictor_path(db, "cpu", kind).read_text())
        assert saved["provenance"]["device"] == "cpu" and saved["metrics"]["held_out"]["n"] >= 2
    training, held_out = split(measured_subnets(measured.store, "cpu"))
    assert len(training) + len(held_out) == 15 and held_out
    evaluated = CliRunner().invoke(coord, ["predictor", "eval", "--db", str(db), "--device", "cpu",
                                           "--format", "json", "--plot", str(tmp_path / "cpu.png")])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)  # the plot's path goes to stderr
    assert set(report) == {"lut", "lut-corrected", "lut-ridge", "noise floor"}
    assert all(0 < report[k]["rmse_pct"] < 100 for k in ("lut", "lut-ridge"))
    assert (tmp_path / "cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = cli("predictor", "eval", "--db", db, "--device", "cpu")
    assert "noise floor" in text and "RMSE %" in text
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    predicted = cli("predictor", "predict", "--db", db, "--device", "cpu", tmp_path / "c.json")
    assert SubnetConfig.smallest(r=64).id in predicted and predicted.strip().endswith("ms")


def test_transfer_to_a_new_device_from_k_measurements(measured):
    db = measured.db
    cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", "lut-ridge")
    out = cli("predictor", "train", "--db", db, "--device", "cpu2", "--kind", "transfer",
              "--source-device", "cpu", "--k", "3")
    assert "transfer predictor for cpu2 from 3 subnets" in out
    saved = json.loads(predictor_path(db, "cpu2", "transfer").read_text())
    assert saved["source"]["kind"] == "lut-ridge" and saved["provenance"]["k"] == 3


@pytest.mark.parametrize("args, message", [
    (["predictor", "train", "--device", "cpu2", "--kind", "lut-ridge"],
     "no LUT campaign has targeted label 'cpu2'"),
    (["predictor", "train", "--device", "cpu2", "--kind", "transfer"], "give --source-device"),
    (["predictor", "eval", "--device", "nosuch"], "has 0 held-out subnets"),
    (["predictor", "predict", "--device", "nosuch", "{config}"], "No such file"),
])
def test_mistakes_get_clear_messages(measured, tmp_path, args, message):
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    args = [a.replace("{config}", str(tmp_path / "c.json")) for a in args]
    result = CliRunner().invoke(coord, [args[0], args[1], "--db", str(measured.db), *args[2:]])
    assert result.exit_code == 1 and message in result.output


def test_a_corrupt_predictor_file_is_reported(measured, tmp_path):
    path = predictor_path(measured.db, "broken", "lut")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    result = CliRunner().invoke(coord, ["predictor", "predict", "--db", str(measured.db),
                                        "--device", "broken", "--kind", "lut",
                                        str(tmp_path / "c.json")])
    assert result.exit_code == 1 and "not a predictor file" in result.output
