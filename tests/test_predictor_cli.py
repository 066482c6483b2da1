"""`ofa-coord predictor train|eval|predict` on real measurements from a real fleet.

The fleet measures once per session (`measured` in conftest.py); each test works on its own
copy of the database (the predictors are stored beside it), so the tests run alone and in any
order. The checks
recompute what the commands print from the campaigns' raw results, exported separately."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.predictor_data import predictor_path
from coordinator.services.predictors import noise_warnings, predictor_file
from coordinator.services.targets import Target
from ofa.config import SubnetConfig
from ofa.latency_model import load_predictor
from ofa.lut import LatencyTable
from ofa.metrics import kendall_tau
from tests.cli_output import cli, stdout

HELD_OUT_EVERY = 3  # README: a third of the subnets, by id, is never trained on


def repeat_medians(db: Path, campaign: str) -> dict[str, list[float]]:
    """{subnet config JSON: [median of repeat 0, of repeat 1]} from `results export`."""
    rows = [
        json.loads(line)
        for line in cli(
            "results", "export", "--db", db, "--campaign", campaign, "--format", "jsonl"
        ).splitlines()
    ]
    medians: dict[str, list[float]] = {}
    for row in sorted(
        (r for r in rows if r["kind"] == "subnet" and r["accepted"]), key=lambda r: r["repeat"]
    ):
        medians.setdefault(row["key"], []).append(row["median_ms"])
    assert all(len(m) == 2 for m in medians.values())
    return medians


def held_out(medians: dict[str, list[float]]) -> tuple[list[SubnetConfig], np.ndarray]:
    """The held-out subnets and their (subnets, 2) repeat medians."""
    configs = sorted((SubnetConfig.from_json(k) for k in medians), key=lambda c: c.id)
    configs = [c for c in configs if int(c.id, 16) % HELD_OUT_EVERY == 0]
    return configs, np.array([medians[c.to_json()] for c in configs])


def rmse_pct(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(100 * np.sqrt(np.mean(((predicted - measured) / measured) ** 2)))


def sse(model, configs: list[SubnetConfig], measured: np.ndarray) -> float:
    return float(np.sum((model.predict(configs) - measured) ** 2))


def test_train_eval_and_predict_for_a_device(measured, db, tmp_path):
    medians = repeat_medians(db, measured[1]["cpu"])
    assert len(medians) == 15
    for kind in ("lut", "lut-corrected", "lut-ridge"):
        out = cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", kind)
        assert f"{kind} predictor for cpu" in out and "noise floor" in out
        saved = json.loads(predictor_file(db, "cpu", kind).read_text())
        assert saved["provenance"]["device"] == "cpu" and saved["metrics"]["held_out"]["n"] >= 2
    models = {
        k: load_predictor(predictor_file(db, "cpu", k))
        for k in ("lut", "lut-corrected", "lut-ridge")
    }

    # Both fits contain the plain LUT sum as a candidate (a=1, b=c=0; every multiplier 1 at
    # no ridge penalty), so on their training subnets neither may do worse than it.
    configs = [SubnetConfig.from_json(k) for k in medians]
    training = [c for c in configs if int(c.id, 16) % HELD_OUT_EVERY]
    target = np.array([np.median(medians[c.to_json()]) for c in training])
    for kind in ("lut-corrected", "lut-ridge"):  # 1e-6 ms^2: the solver's 1e-9 diagonal jitter
        assert sse(models[kind], training, target) <= sse(models["lut"], training, target) + 1e-6

    evaluated = CliRunner().invoke(
        coord,
        [
            "predictor",
            "eval",
            "--db",
            str(db),
            "--device",
            "cpu",
            "--format",
            "json",
            "--plot",
            str(tmp_path / "cpu.png"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    # the plot's path goes to stderr
    report = {r["predictor"]: r for r in json.loads(evaluated.stdout)}
    assert set(report) == {"lut", "lut-corrected", "lut-ridge", "noise floor"}
    subnets, repeats = held_out(medians)
    assert len(subnets) >= 2 and all(report[k]["n"] == len(subnets) for k in report)
    for kind, model in models.items():  # each repeat in turn, averaged (README)
        predicted = model.predict(subnets)
        expected = np.mean([rmse_pct(predicted, repeats[:, i]) for i in (0, 1)])
        assert report[kind]["rmse_pct"] == pytest.approx(expected, rel=1e-9)
    floor = np.mean(
        [rmse_pct(repeats[:, 0], repeats[:, 1]), rmse_pct(repeats[:, 1], repeats[:, 0])]
    )
    assert report["noise floor"]["rmse_pct"] == pytest.approx(floor, rel=1e-9)
    assert (tmp_path / "cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = cli("predictor", "eval", "--db", db, "--device", "cpu")
    assert "noise floor" in text and "RMSE %" in text

    # `predict --kind lut` is OFA's LUT sum over the exported table
    cli("lut", "export", "--db", db, "--device", "cpu", "--out", tmp_path / "lut")
    config = SubnetConfig.smallest(r=64)
    (tmp_path / "c.json").write_text(config.to_json())
    (predicted,) = json.loads(
        stdout(
            coord,
            "predictor",
            "predict",
            "--db",
            db,
            "--device",
            "cpu",
            "--kind",
            "lut",
            tmp_path / "c.json",
            "--format",
            "json",
        )
    )
    assert predicted["id"] == config.id and predicted["r"] == 64
    lut_sum = LatencyTable.from_ofa_yaml(tmp_path / "lut").predict_ms(config)
    assert predicted["latency_ms"] == pytest.approx(lut_sum, abs=5e-4)


def test_structure_is_trained_without_a_lut_and_evaluated_beside_the_lut_kinds(measured, db):
    """cpu2 has no LUT, only 9 subnets measured whole: the structural kind still fits, and
    on cpu `eval` scores it beside a LUT kind on the same held-out subnets."""
    out = cli("predictor", "train", "--db", db, "--device", "cpu2", "--kind", "structure")
    assert (
        "structure predictor for cpu2 on onnxruntime-cpu-fp32-b1 from" in out and "subnets" in out
    )
    saved = json.loads(predictor_file(db, "cpu2", "structure").read_text())
    medians = repeat_medians(db, measured[1]["cpu2"])
    subnets, _ = held_out(medians)
    assert saved["table"] is None and saved["provenance"]["lut"] is None
    assert saved["provenance"]["training_subnets"] == len(medians) - len(subnets)
    model = load_predictor(predictor_file(db, "cpu2", "structure"))
    assert model.resolutions.tolist() == [64] and np.all(model.predict(subnets) > 0)
    for kind in ("structure", "lut-ridge"):
        cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", kind)
    report = {
        r["predictor"]: r
        for r in json.loads(
            stdout(
                coord,
                *("predictor", "eval", "--db", db, "--device", "cpu"),
                *("--kind", "structure", "--kind", "lut-ridge", "--format", "json"),
            )
        )
    }
    assert set(report) == {"structure", "lut-ridge", "noise floor"}
    assert report["structure"]["n"] == report["lut-ridge"]["n"] >= 2
    # a structural source transfers like a LUT-made one
    out = cli(
        *("predictor", "train", "--db", db, "--device", "cpu2", "--kind", "transfer"),
        *("--source-device", "cpu", "--source-kind", "structure", "--k", "3"),
    )
    assert "transfer predictor for cpu2 on onnxruntime-cpu-fp32-b1 from 3 subnets" in out
    saved = json.loads(predictor_file(db, "cpu2", "transfer").read_text())
    assert saved["source"]["kind"] == "structure"


def test_transfer_to_a_new_device_from_k_measurements(measured, db, tmp_path):
    cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", "lut-ridge")
    out = cli(
        "predictor",
        "train",
        "--db",
        db,
        "--device",
        "cpu2",
        "--kind",
        "transfer",
        "--source-device",
        "cpu",
        "--k",
        "3",
    )
    assert "transfer predictor for cpu2 on onnxruntime-cpu-fp32-b1 from 3 subnets" in out
    saved = json.loads(predictor_file(db, "cpu2", "transfer").read_text())
    assert saved["source"]["kind"] == "lut-ridge" and saved["provenance"]["k"] == 3
    medians = repeat_medians(db, measured[1]["cpu2"])
    by_id = {SubnetConfig.from_json(k).id: SubnetConfig.from_json(k) for k in medians}
    fitted = [by_id[i] for i in saved["provenance"]["fitted_on"]]
    assert len(fitted) == 3 and all(int(c.id, 16) % HELD_OUT_EVERY for c in fitted)

    # The predictions, read back through `predictor predict`, against cpu2's measurements:
    # a least-squares line through the 3 fitted subnets (its residuals sum to zero) ...
    (tmp_path / "all.jsonl").write_text("\n".join(c.to_json() for c in by_id.values()))
    printed = {
        record["id"]: record["latency_ms"]
        for record in json.loads(
            stdout(
                coord,
                "predictor",
                "predict",
                "--db",
                db,
                "--device",
                "cpu2",
                "--kind",
                "transfer",
                tmp_path / "all.jsonl",
                "--format",
                "json",
            )
        )
    }
    source = load_predictor(predictor_file(db, "cpu", "lut-ridge"))
    measured_fitted = np.array([np.median(medians[c.to_json()]) for c in fitted])
    slope, intercept = np.polyfit(source.predict(fitted), measured_fitted, 1)
    for config in by_id.values():
        expected = slope * source.predict([config])[0] + intercept
        assert printed[config.id] == pytest.approx(expected, rel=1e-6)
    residuals = np.array([printed[c.id] for c in fitted]) - measured_fitted
    assert abs(residuals.sum()) <= 1e-6 * measured_fitted.sum()
    # ... which rescales the source and so keeps its ranking of the held-out subnets.
    report, _ = json.loads(  # transfer's record, then the noise floor's
        stdout(
            coord,
            "predictor",
            "eval",
            "--db",
            db,
            "--device",
            "cpu2",
            "--kind",
            "transfer",
            "--format",
            "json",
        )
    )
    subnets, repeats = held_out(medians)
    source_tau = np.mean([kendall_tau(source.predict(subnets), repeats[:, i]) for i in (0, 1)])
    assert report["predictor"] == "transfer" and report["kendall_tau"] == pytest.approx(
        np.sign(slope) * source_tau
    )


@pytest.mark.parametrize(
    "kind, field, tamper, message",
    [
        (
            "lut",
            "table.fixed",
            lambda f: [float("nan")] + f[1:],
            "table.fixed: expected finite numbers, got NaN or infinity",
        ),
        (
            "lut-ridge",
            "params.multipliers",
            lambda m: m[:-1],
            r"params.multipliers: expected shape (90), got (89,)",
        ),
        ("lut-corrected", "params.scale", str, "params.scale: expected a finite number, got '"),
        (
            "lut-corrected",
            "params.offset",
            lambda _: float("inf"),
            "params.offset: expected a finite number, got inf",
        ),
    ],
)
def test_a_tampered_predictor_is_refused_in_one_line(db, tmp_path, kind, field, tamper, message):
    cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", kind)
    path = predictor_file(db, "cpu", kind)
    data = json.loads(path.read_text())
    section, name = field.split(".")
    data[section][name] = tamper(data[section][name])
    path.write_text(json.dumps(data))  # NaN and Infinity as json.dumps writes them
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    for args in (["eval", "--kind", kind], ["predict", "--kind", kind, str(tmp_path / "c.json")]):
        result = CliRunner().invoke(
            coord, ["predictor", args[0], "--db", str(db), "--device", "cpu", *args[1:]]
        )
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert result.output.startswith(f"ofa-coord: error: {path}: {message}")
        assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["predictor", "train", "--device", "cpu2", "--kind", "lut-ridge"],
            "no LUT campaign has targeted label 'cpu2'",
        ),
        (["predictor", "train", "--device", "cpu2", "--kind", "transfer"], "give --source-device"),
        (["predictor", "eval", "--device", "nosuch"], "no predictor trained for 'nosuch'"),
        (["predictor", "predict", "--device", "nosuch", "{config}"], "no predictor trained"),
    ],
)
def test_mistakes_get_clear_messages(db, tmp_path, args, message):
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    args = [a.replace("{config}", str(tmp_path / "c.json")) for a in args]
    result = CliRunner().invoke(coord, [args[0], args[1], "--db", str(db), *args[2:]])
    assert result.exit_code == 1 and message in result.output


def test_a_corrupt_predictor_file_is_reported(db, tmp_path):
    path = predictor_path(db, "broken", "lut", Target().name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    result = CliRunner().invoke(
        coord,
        [
            "predictor",
            "predict",
            "--db",
            str(db),
            "--device",
            "broken",
            "--kind",
            "lut",
            str(tmp_path / "c.json"),
        ],
    )
    assert result.exit_code == 1 and "not a predictor file" in result.output


def test_noise_warnings_name_figures_that_cannot_be_taken_at_face_value():
    """A floor of 84% RMSE or a negative Kendall tau were once printed without a word."""
    fine = {"rmse_pct": 5.0, "kendall_tau": 0.9}
    assert noise_warnings({"lut": fine, "floor": fine}, "floor") == []
    noisy = {"rmse_pct": 84.0, "kendall_tau": -0.1}
    lines = noise_warnings(
        {"lut": {"rmse_pct": 90.0, "kendall_tau": -0.2}, "floor": noisy}, "floor"
    )
    assert len(lines) == 3 and all(line.startswith("warning: ") for line in lines)
    assert "84.0% RMSE" in lines[0] and "tau -0.10" in lines[1] and "lut ranks" in lines[2]
    assert noise_warnings({"lut": fine, "floor": None}, "floor") == []


def test_predictors_are_kept_per_measurement_target(db, tmp_path):
    """Training on one target keeps the predictors of another; a command that would read a
    device with predictors on two targets asks which; a predictor stored before predictors
    were kept per target is found under the target it records."""
    cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", "lut")
    fp32 = Target().name
    trained = predictor_file(db, "cpu", "lut")
    assert trained == predictor_path(db, "cpu", "lut", fp32)
    other = Target(batch=8).name
    data = json.loads(trained.read_text())
    data["provenance"]["target"] = Target(batch=8).to_dict()
    predictor_path(db, "cpu", "lut", other).parent.mkdir(parents=True)
    predictor_path(db, "cpu", "lut", other).write_text(json.dumps(data))
    cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", "lut")  # again, on fp32
    assert predictor_path(db, "cpu", "lut", other).is_file()  # not replaced
    (tmp_path / "c.json").write_text(SubnetConfig.smallest(r=64).to_json())
    asked = ["predictor", "predict", "--db", str(db), "--device", "cpu", "--kind", "lut"]
    result = CliRunner().invoke(coord, [*asked, str(tmp_path / "c.json")])
    assert result.exit_code == 1
    assert f"has predictors on {fp32}, {other}; name one with --target" in result.stderr
    for target in (fp32, other):
        out = stdout(
            coord, *asked, "--target", target, str(tmp_path / "c.json"), "--format", "json"
        )
        assert json.loads(out)[0]["latency_ms"] > 0
    result = CliRunner().invoke(
        coord, [*asked, "--target", "torch-cpu-fp32-b1", str(tmp_path / "c.json")]
    )
    assert "has no predictor on torch-cpu-fp32-b1" in result.stderr

    old = predictor_path(db, "cpu", "lut", fp32)
    old.rename(old.parent.parent / "lut.json")  # where predictors lived before targets
    old.parent.rmdir()
    assert predictor_file(db, "cpu", "lut", fp32) == old.parent.parent / "lut.json"
    (old.parent.parent / "structure.json").write_text("{ damaged")  # another old file
    out = stdout(coord, *asked, "--target", other, str(tmp_path / "c.json"), "--format", "json")
    assert json.loads(out)[0]["latency_ms"] > 0  # the damaged file does not get in the way
    result = CliRunner().invoke(
        coord, [*asked, "--kind", "structure", "--target", fp32, str(tmp_path / "c.json")]
    )  # asked for itself, the damaged file is named
    assert result.exit_code == 1 and "structure.json" in result.stderr


def test_an_old_predictor_that_records_no_target_serves_the_target_asked_for(db, tmp_path):
    """Predictors from before targets were recorded: any target asked for that has none of
    its own, and the device's only target otherwise."""
    cli("predictor", "train", "--db", db, "--device", "cpu2", "--kind", "structure")
    trained = predictor_file(db, "cpu2", "structure")
    data = json.loads(trained.read_text())
    del data["provenance"]["target"]
    old = trained.parent.parent / "structure.json"
    old.write_text(json.dumps(data))
    trained.unlink()
    trained.parent.rmdir()
    two_threads = Target(threads=2).name
    assert predictor_file(db, "cpu2", "structure", two_threads) == old
    out = cli("predictor", "eval", "--db", db, "--device", "cpu2", "--target", two_threads)
    assert "structure" in out and "noise floor" in out
