"""Progress goes to stderr and never spoils stdout: `campaign create` counts every model it
builds (cached ones at once), `specialize --format json` stays parseable while it reports
its search, and a campaign's bar fills only with jobs that ran (never for an empty or a
cancelled one). Real store, real exported models, real OFA assets."""

from __future__ import annotations

import json

from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.campaigns import campaign_status, cancel_campaign, render_progress
from coordinator.state import Store
from ofa.config import SubnetConfig
from tests.test_cli_errors import register


def invoke(*args: object):
    result = CliRunner().invoke(coord, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def create(db, configs, name: str, *more: str):
    return invoke(
        "campaign", "create", "--db", db, "--name", name, "--label", "cpu",
        "--workload", "configs", "--configs", configs, "--repeats", "1", *more,
    )  # fmt: skip


def test_campaign_create_counts_each_model_and_cached_ones_at_once(tmp_path):
    db, configs = tmp_path / "fleet.db", tmp_path / "two.jsonl"
    configs.write_text("".join(SubnetConfig.smallest(r=r).to_json() + "\n" for r in (48, 56)))
    register(Store(db), "cpu")
    first = create(db, configs, "first")
    assert first.stdout.startswith("campaign c") and first.stdout.count("\n") == 1
    lines = first.stderr.splitlines()
    assert lines[-1].startswith("building models: 3/3 (subnets 2/2, reference 1/1), ")
    again = create(db, configs, "again", "--reference-every", "0")  # every model cached
    assert len(again.stderr.splitlines()) == 1
    assert again.stderr.startswith("building models: 2/2 (subnets 2/2), ")


def test_an_empty_or_cancelled_campaign_shows_no_full_bar(tmp_path):
    db, configs = tmp_path / "fleet.db", tmp_path / "one.jsonl"
    configs.write_text(SubnetConfig.smallest(r=48).to_json() + "\n")
    store = Store(db)
    register(store, "cpu")
    empty = create(db, configs, "empty").stdout.split()[1]
    cancel_campaign(store, empty)  # cancelled before it was started: no jobs at all
    line = render_progress(campaign_status(store, empty))
    assert "no jobs" in line and "#" not in line and "cancelled" in line
    started = create(db, configs, "started", "--start").stdout.split()[1]
    assert cancel_campaign(store, started) == 2  # the subnet and the reference, unmeasured
    status = campaign_status(store, started)
    line = render_progress(status)
    assert f"[{'.' * 30}] 0/2, 2 cancelled" in line and line.split(" | ")[3] == "cancelled"
    assert "cpu 0/2, 2 cancelled" in line
    table = invoke("campaign", "status", "--db", db, started).stdout
    assert "0/2, 2 cancelled" in table and "#" not in table
    shown = invoke("campaign", "status", "--db", db, started, "--format", "json").stdout
    as_json = json.loads(shown)
    assert as_json["finished"] == as_json["total"] == 2  # JSON counts cancelled jobs as ended


def test_specialize_json_stays_parseable_with_progress_on(assets, tmp_path):
    result = invoke(
        "specialize", "--lut", assets / "note10", "--acc-predictor", assets / "acc_predictor.pth",
        "--pareto", "20:30:3", "--generations", "5", "--out", tmp_path, "--format", "json",
    )  # fmt: skip
    rows = json.loads(result.stdout)
    assert [row["budget_ms"] for row in rows] == [20, 25, 30]
    assert "searching: 3/3 (30 ms), " in result.stderr
