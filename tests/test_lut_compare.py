"""`ofa-coord lut compare` on the OFA authors' Note10 tables against a copy with one stage
made slower (written in the same yaml format, one resolution left out), checked against the
ratios computed from the raw yaml; and `lut export` saying what it did not export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.lut_compare import latency_groups, read_table
from coordinator.state import Store
from ofa.plan import space_lut_specs
from tests.test_cli_errors import register, started_lut_campaign

SCALE, SLOW_STAGE, SLOW = 0.5, 3, 2.0  # every entry halved, stage 3 doubled instead
SLOW_CHANNELS = 96  # stage 3's output channels at width 1.2 (the Note10 supernet)
DROPPED = 224  # the resolution the copy leaves out


def invoke(*args):
    return CliRunner().invoke(coord, [str(a) for a in args], catch_exceptions=False)


def raw(folder: Path) -> dict[tuple[int, str], float]:
    return {
        (int(path.name.split("_")[0]), key): value["mean"]
        for path in folder.glob("*_lookup_table.yaml")
        for key, value in yaml.safe_load(path.read_text()).items()
    }


def in_slow_stage(key: str) -> bool:
    """Stage 3's elastic blocks, told from the key text itself: expanded_conv with an
    expansion whose output has stage 3's channels."""
    match = re.match(r"expanded_conv-input:\d+x\d+x(\d+)-output:\d+x\d+x(\d+)-expand:(\d+)", key)
    return bool(match) and int(match[2]) == SLOW_CHANNELS and match[3] != match[1]


@pytest.fixture(scope="module")
def tables(assets, tmp_path_factory) -> tuple[Path, Path]:
    """The Note10 folder and its scaled copy (no r=224 file)."""
    copy = tmp_path_factory.mktemp("luts") / "scaled"
    copy.mkdir()
    for path in (assets / "note10").glob("*_lookup_table.yaml"):
        if path.name.startswith(f"{DROPPED}_"):
            continue
        table = yaml.safe_load(path.read_text())
        for key, entry in table.items():
            entry["mean"] *= SLOW if in_slow_stage(key) else SCALE
        (copy / path.name).write_text(yaml.safe_dump(table))
    return assets / "note10", copy


def test_ratios_groups_and_extremes_from_the_raw_tables(tables, tmp_path):
    base, scaled = tables
    plot = tmp_path / "plots" / "ratios.png"
    result = invoke("lut", "compare", base, scaled, "--format", "json", "--plot", plot)
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)

    a, b = raw(base), raw(scaled)
    expected = {entry: b[entry] / a[entry] for entry in a.keys() & b.keys()}
    got = {(e["r"], e["key"]): e["ratio"] for e in report["entries"]}
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(expected[k], rel=1e-9) for k in expected)
    assert report["shared"] == len(expected) and report["only_table"] == 0
    assert report["only_base"] == len(a.keys() - b.keys()) > 0
    assert report["resolutions_only_base"] == [DROPPED]
    assert {e["r"] for e in report["not_shared"]} == {DROPPED}
    ratios = np.array(list(expected.values()))
    assert report["median"] == pytest.approx(np.median(ratios), rel=1e-9)
    assert report["p10"] == pytest.approx(np.percentile(ratios, 10), rel=1e-9)
    assert report["p90"] == pytest.approx(np.percentile(ratios, 90), rel=1e-9)

    slowest = {row["by"]: row for row in report["most_different"]}
    assert slowest["stage"]["group"] == f"stage {SLOW_STAGE}"
    assert slowest["stage"]["median"] == pytest.approx(SLOW, rel=1e-9)
    slow_entries = sum(in_slow_stage(key) for _, key in expected)
    assert slowest["stage"]["entries"] == slow_entries > 0
    stages = [row for row in report["groups"] if row["by"] == "stage"]
    others = [row for row in stages if row["group"] != f"stage {SLOW_STAGE}"]
    assert len(others) == 6 and all(row["median"] == pytest.approx(SCALE) for row in others)
    resolutions = {row["group"] for row in report["groups"] if row["by"] == "resolution"}
    assert resolutions == {f"r={r}" for r, _ in expected}

    farthest = report["extremes"]
    assert len(farthest) == 10 and all(in_slow_stage(e["key"]) for e in farthest)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_table_and_json_give_the_same_numbers(tables):
    base, scaled = tables
    (report,) = json.loads(invoke("lut", "compare", base, scaled, "--format", "json").stdout)
    text = invoke("lut", "compare", base, scaled, "--top", "3").stdout
    summary = text.splitlines()[2].split()
    assert summary == [
        report["table"],
        str(report["shared"]),
        str(report["only_base"]),
        str(report["only_table"]),
        *(f"{report[k]:.4f}" for k in ("median", "p10", "p90")),
    ]
    for row in report["groups"]:
        line = f"{row['by']}  {row['group']}"
        numbers = [f"{row[k]:.4f}" for k in ("median", "p10", "p90", "vs_median")]
        pattern = rf"^{re.escape(row['by'])} +{re.escape(row['group'])} +{row['entries']} +"
        assert re.search(pattern + " +".join(map(re.escape, numbers)) + "$", text, re.M), line
    assert f"r={DROPPED}: only in note10, not compared" in text


def test_refusals_are_one_line(tables, tmp_path):
    base, scaled = tables
    other = tmp_path / "other"
    other.mkdir()
    (other / "96_lookup_table.yaml").write_text(yaml.safe_dump({"Conv-x": {"mean": 1.0}}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "160_lookup_table.yaml").write_text("Conv: [unclosed\n")
    for args, names in [
        ((base,), ["tables", "at least 2", "got 1"]),
        ((), ["got 0"]),
        ((base, tmp_path / "nowhere"), ["nowhere", "lookup_table.yaml"]),
        ((base, broken), ["broken", "not a readable LUT"]),
        ((base, other), ["other", "no LUT entry in common", "[96]"]),
        ((base, scaled, "--plot", tmp_path / "x.pdf"), ["plot", ".png"]),
    ]:
        result = invoke("lut", "compare", *args)
        lines = result.stderr.splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith("ofa-coord: error: ")
        assert all(name in lines[0] for name in names), (names, lines[0])
        assert result.stdout == ""


def test_lut_export_says_what_it_did_not_export(tmp_path):
    """A LUT campaign with nothing measured exports nothing and says why; a partial one
    counts the missing entries it does not list."""
    db = tmp_path / "fleet.db"
    store = Store(db)
    register(store, "cpu")
    started_lut_campaign(store)
    export = ("lut", "export", "--db", db, "--device", "cpu", "--allow-missing")
    result = invoke(*export, "--out", tmp_path / "empty")
    assert result.exit_code == 1 and result.stdout == ""
    why = f"none of the {len(space_lut_specs(48))} entries its LUT campaigns asked for"
    assert result.stderr.splitlines() == [
        f"ofa-coord: error: device: nothing exported for cpu: {why} has been measured yet"
    ]
    assert not (tmp_path / "empty").exists()

    agent = store.list_agents()[0]["id"]
    measured = 30
    for job in store.lease_jobs(agent, measured, 60):
        store.report(agent, job.job_id, job.lease_id, "ok", {"samples_ns": [1_000_000, 1_200_000]})
    disturbed = {"samples_ns": [9_000_000], "evidence": {"reasons": ["steal 0.3 > 0.05"]}}
    for _ in range(4):  # a campaign job may be disturbed 4 times, then it ends disturbed
        (job,) = store.lease_jobs(agent, 1, 60)
        store.report(agent, job.job_id, job.lease_id, "disturbed", disturbed)
    result = invoke(*export, "--out", tmp_path / "partial")
    assert result.exit_code == 0, result.output
    missing = len(space_lut_specs(48)) - measured
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"{missing} entries missing (1 disturbed on every attempt, {missing - 1} still queued):"
    )
    assert len(lines) == 1 + 20 + 1 and all(line.startswith("  r=48 ") for line in lines[1:21])
    assert all(line.endswith(")") for line in lines[1:21])  # each with its reason
    assert lines[-1] == f"  ... and {missing - 20} more"
    assert f"{measured} entries for cpu" in result.stdout

    included = invoke(*export, "--include-disturbed", "--format", "json", "--out", tmp_path / "all")
    assert included.exit_code == 0, included.output
    assert f"{measured + 1} entries for cpu" in included.stdout
    assert "1 from disturbed measurements only" in included.stdout
    (table,) = json.loads((tmp_path / "all" / "cpu_lut.json").read_text())["tables"].values()
    tainted = [key for key, entry in table.items() if entry["disturbed_only"]]
    assert len(tainted) == 1 and table[tainted[0]]["median_ms"] == 9.0
    assert table[tainted[0]]["disturbed"] == 4 and table[tainted[0]]["repeats"] == 4
    assert all(entry["disturbed"] == 0 for key, entry in table.items() if key != tainted[0])


def test_one_devices_latency_groups_follow_the_note10_table(assets):
    """The page's LUT plot: Note10's entries by group, against the raw yaml files."""
    table = read_table(assets / "note10", "note10")
    rows = {(row["by"], row["group"]): row for row in latency_groups(table)}
    for r, entries in table.means.items():
        row = rows[("resolution", f"r={r}")]
        assert row["entries"] == len(entries)
        assert row["median"] == pytest.approx(float(np.median(list(entries.values()))))
        assert row["p10"] <= row["median"] <= row["p90"]
    # on a phone more work costs more: larger kernels, expand ratios and resolutions
    for dimension, groups in (
        ("kernel", ["3", "5", "7"]),
        ("expand", ["3", "4", "6"]),
        ("resolution", [f"r={r}" for r in sorted(table.means)]),
    ):
        medians = [rows[(dimension, group)]["median"] for group in groups]
        assert medians == sorted(medians), dimension
    assert sum(row["entries"] for (by, _), row in rows.items() if by == "stage") == sum(
        len(entries) for entries in table.means.values()
    )
