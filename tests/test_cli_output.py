"""One output convention: every command that lists or shows something takes `--format
table|json` (and csv for tables of records), and its formats agree on the same data. The
tables are read back cell by cell and must fit 80 terminal columns."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from agent.cli import main as agent_main
from coordinator.cli.app import main as coord
from coordinator.state import Store
from ofa.config import SubnetConfig, sample_configs
from tests.cli_output import cli, stdout
from tests.fleet import QUICK_FLAGS
from tests.test_accuracy_training import pairs_file  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]


def parse_table(text: str) -> list[dict[str, str]]:
    """The first table in `text` as {header: cell} rows, wrapped cells joined again."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    assert len(lines[rule]) <= 80, text  # no line of the table is longer than its rule
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[rule])]
    headers = [lines[rule - 1][a:b].strip() for a, b in spans]
    rows: list[list[str]] = []
    for line in lines[rule + 1 :]:
        if not line.strip() or len(line) > len(lines[rule]):  # the table has ended
            break
        cells = [line[a:b].strip() for a, b in spans]
        if all(cells):  # every cell has something, "-" at least; a wrapped row's next
            rows.append(cells)  # lines leave the cells that fit blank
            continue
        for i, cell in enumerate(cells):
            if cell:
                joint = "" if rows[-1][i].endswith("-") else " "
                rows[-1][i] += joint + cell
    return [dict(zip(headers, row, strict=True)) for row in rows]


def three_formats(main, *args) -> tuple[list[dict], list[dict[str, str]], list[dict[str, str]]]:
    """The records as JSON, the table's rows and the CSV's rows, one per record each, the
    CSV's raw values the JSON's (lists and objects as JSON, null as empty)."""
    records = json.loads(stdout(main, *args, "--format", "json"))
    table = parse_table(stdout(main, *args))
    rows = list(csv.DictReader(io.StringIO(stdout(main, *args, "--format", "csv"))))
    assert len(records) == len(table) == len(rows) > 0
    for record, row in zip(records, rows, strict=True):
        for key, cell in row.items():
            value = record[key]
            if isinstance(value, (list, dict)):
                assert json.loads(cell) == value
            elif isinstance(value, (int, float)):
                assert float(cell) == pytest.approx(value, rel=1e-12)
            else:
                assert cell == ("" if value is None else str(value))
    return records, table, rows


@pytest.fixture
def store_db(tmp_path) -> Path:
    """A database with two tokens (one revoked), a registered agent and a started campaign
    (its jobs queued; no agent runs)."""
    path = tmp_path / "fleet.db"
    store = Store(path)
    token = store.token_by_secret(store.create_token("pixel7-1", labels=["rpi4", "arm"]))
    store.create_token("old")
    store.revoke_token("old")
    device = {"machine": "aarch64", "cpu_model": "Cortex-A72 with a long model name here"}
    store.register_agent(token, "", ["rpi4", "arm"], device, 4, "0.1")
    cli(
        "campaign",
        "create",
        "--db",
        path,
        "--name",
        "a campaign with a name long enough to need wrapping in a table",
        "--label",
        "rpi4",
        "--workload",
        "random",
        "--count",
        "2",
        "--resolutions",
        "64",
        "--repeats",
        "1",
        "--reference-every",
        "0",
        *QUICK_FLAGS,
        "--start",
    )
    return path


def test_devices_in_three_formats(store_db):
    records, table, _ = three_formats(coord, "devices", "--db", store_db)
    (agent,) = records
    (row,) = table
    assert list(row) == ["agent", "status", "labels", "device", "threads", "last seen", "jobs"]
    assert row["agent"] == agent["id"] and row["labels"] == ",".join(agent["labels"])
    assert row["status"] == ("online" if agent["online"] else "offline")
    assert row["device"] == "aarch64 Cortex-A72 with a long model name here ? cpus"
    assert int(row["threads"]) == agent["threads"] == 4
    assert int(row["jobs"]) == agent["jobs_done"] == 0


def test_token_list_in_three_formats(store_db):
    records, table, _ = three_formats(coord, "token", "list", "--db", store_db)
    assert [r["name"] for r in records] == [r["name"] for r in table] == ["pixel7-1", "old"]
    assert [r["state"] for r in records] == [r["state"] for r in table] == ["active", "revoked"]
    assert table[0]["agent"] == records[0]["agent_id"] and table[1]["agent"] == "-"
    assert [r["labels"] for r in records] == [["arm", "rpi4"], "any"]
    assert [r["labels"] for r in table] == ["arm,rpi4", "any"]
    assert all("secret" not in key and "hash" not in key for key in records[0])


def test_campaign_list_and_status_agree(store_db):
    records, table, _ = three_formats(coord, "campaign", "list", "--db", store_db)
    (campaign,), (row,) = records, table
    assert row["name"] == campaign["name"] and row["state"] == campaign["state"] == "running"
    assert int(row["total"]) == campaign["total"] == 2 and int(row["ended"]) == 0
    assert row["targets"] == "label:rpi4" and list(campaign["targets"]) == ["label:rpi4"]

    status = json.loads(
        stdout(coord, "campaign", "status", "--db", store_db, row["id"], "--format", "json")
    )
    assert {k: status[k] for k in ("id", "total", "targets")} == {
        k: campaign[k] for k in ("id", "total", "targets")
    }
    text = stdout(coord, "campaign", "status", "--db", store_db, row["id"])
    assert text.startswith(f"{row['id']} [") and "0/2" in text.splitlines()[0]
    (target,) = parse_table(text)
    assert target["target"] == "label:rpi4"
    assert {state: int(target[state]) for state in ("queued", "total")} == {
        "queued": status["targets"]["label:rpi4"]["queued"],
        "total": 2,
    }


def test_describe_table_and_json_agree(assets):
    path = assets / "ofa_specialized/flops-389M_top1-79.1_finetune-75/net.config"
    info = json.loads(stdout(coord, "describe", path, "--format", "json"))
    summary, layers = stdout(coord, "describe", path).split("\n\n")
    fields = {row["field"]: row["value"] for row in parse_table(summary)}
    assert fields["id"] == info["id"] and fields["MACs"] == f"{info['macs'] / 1e6:.1f} M"
    assert fields["resolution"] == str(info["config"]["r"])
    keys = [row["LUT key"].replace(" ", "") for row in parse_table(layers)]  # wrapped anywhere
    assert keys == info["lut_keys"]


def test_accuracy_eval_table_and_json_agree(assets, pairs_file):  # noqa: F811
    args = ("accuracy", "eval", "--data", pairs_file, "--predictor", assets / "acc_predictor.pth")
    (record,) = json.loads(stdout(coord, *args, "--format", "json"))
    (row,) = parse_table(stdout(coord, *args))
    assert record["n"] == int(row["pairs"]) == 2500 and isinstance(record["n"], int)
    path = str(assets / "acc_predictor.pth")
    assert record["predictor"] == path and row["predictor"].replace(" ", "") == path
    assert float(row["RMSE (points)"]) == pytest.approx(record["rmse_points"], abs=5e-4)
    assert float(row["Kendall tau"]) == pytest.approx(record["kendall_tau"], abs=5e-4)


def test_predictor_eval_and_predict_formats_agree(db, tmp_path):
    cli("predictor", "train", "--db", db, "--device", "cpu", "--kind", "lut-ridge")
    records, table, _ = three_formats(coord, "predictor", "eval", "--db", db, "--device", "cpu")
    assert [r["predictor"] for r in records] == [r["predictor"] for r in table]
    assert [r["predictor"] for r in records] == ["lut-ridge", "noise floor"]
    for record, row in zip(records, table, strict=True):
        assert isinstance(record["n"], int) and int(row["n"]) == record["n"]
        assert float(row["RMSE %"]) == pytest.approx(record["rmse_pct"], abs=5e-3)

    configs = sample_configs(3, seed=1, resolutions=(64,), w=1.0)
    (tmp_path / "c.jsonl").write_text("\n".join(c.to_json() for c in configs))
    args = ("predictor", "predict", "--db", db, "--device", "cpu", tmp_path / "c.jsonl")
    predicted = json.loads(stdout(coord, *args, "--format", "json"))
    table = parse_table(stdout(coord, *args))
    assert [r["id"] for r in predicted] == [r["subnet"] for r in table] == [c.id for c in configs]
    assert [SubnetConfig.from_dict(r["config"]) for r in predicted] == configs
    for record, row in zip(predicted, table, strict=True):
        assert float(row["latency ms"]) == pytest.approx(record["latency_ms"], abs=5e-4)


def test_specialize_table_json_and_the_fronts_title(assets, tmp_path):
    args = [
        "specialize",
        "--lut",
        assets / "note10",
        "--acc-predictor",
        assets / "acc_predictor.pth",
        "--pareto",
        "20:30:2",
        "--generations",
        "5",
    ]
    chosen = json.loads(stdout(coord, *args, "--format", "json", "--out", tmp_path / "j"))
    table = parse_table(stdout(coord, *args, "--out", tmp_path / "t"))
    assert [r["id"] for r in chosen] == [
        row["id"] for row in csv.DictReader((tmp_path / "j" / "pareto.csv").open())
    ]
    assert [float(r["budget ms"]) for r in table] == [r["budget_ms"] for r in chosen] == [20, 30]
    for record, row in zip(chosen, table, strict=True):  # the same seed, the same choices
        assert float(row["top-1"]) == pytest.approx(record["accuracy"], abs=5e-5)
        assert int(row["r"]) == record["r"]
    svg = (tmp_path / "t" / "pareto.svg").read_text()
    assert f"<title>accuracy-latency front: LUT {assets / 'note10'}</title>" in svg


def test_bench_shows_the_stats_as_a_table_or_json():
    model = ROOT / "agent" / "data" / "reference.onnx"
    quick = ["--min-runs", "5", "--min-time", "0.01", "--warmup-min-time", "0"]
    report = json.loads(stdout(agent_main, "bench", model, *quick, "--format", "json"))
    fields = {
        row["field"]: row["value"]
        for row in parse_table(stdout(agent_main, "bench", model, *quick))
    }
    assert set(report["stats"]) <= set(fields) and fields["model"] == str(model)
    assert all(float(fields[key]) >= 0 for key in report["stats"])  # numbers, not a dict
    assert int(fields["n"]) >= 5 and fields["stop_reason"] in ("precision", "time_cap")
    assert len(report["samples_ns"]) == report["stats"]["n"]
    assert "95% CI" in " ".join(stdout(agent_main, "bench", "--help").split())


def test_the_format_option_is_spelled_the_same_everywhere():
    commands = [
        (coord, ["devices"], "table|json|csv"),
        (coord, ["status"], "table|json"),
        (coord, ["token", "list"], "table|json|csv"),
        (coord, ["campaign", "list"], "table|json|csv"),
        (coord, ["predictor", "eval"], "table|json|csv"),
        (coord, ["campaign", "status"], "table|json"),
        (coord, ["describe"], "table|json"),
        (coord, ["accuracy", "eval"], "table|json"),
        (coord, ["predictor", "predict"], "table|json"),
        (coord, ["specialize"], "table|json"),
        (agent_main, ["bench"], "table|json"),
    ]
    for main, command, choices in commands:
        text = " ".join(stdout(main, *command, "--help").split())
        assert f"--format [{choices}]" in text and "[default: table]" in text, command
