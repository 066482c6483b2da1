"""The OFA-ResNet50 search and `specialize` with the authors' ResNet50 accuracy predictor:
answers within the budget, deterministic, better than random draws; impossible budgets
refused by name; a LUT folder of a ResNet50 table end to end from the command line."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from ofa.lut import LatencyTable
from ofa.plan import count_macs
from ofa.resnet import PREDICTOR_RESOLUTIONS, ResNetAccuracyPredictor, ResNetConfig
from ofa.resnet_search import resnet_search
from ofa.search import ImpossibleBudget, SearchSettings
from ofa.zoo import lut_specs


@pytest.fixture(scope="module")
def predictor(assets):
    return ResNetAccuracyPredictor.load(assets / "ofa_resnet50_acc_predictor.pth")


def mmacs(config: ResNetConfig) -> float:
    return count_macs(config) / 1e6


@pytest.mark.parametrize("budget", [800.0, 2000.0, 3500.0])
def test_the_search_stays_within_the_budget_and_beats_random_draws(predictor, budget):
    settings = SearchSettings(seed=1)
    found = resnet_search(predictor.predict, mmacs, budget, PREDICTOR_RESOLUTIONS, settings)
    assert found.cost == mmacs(found.config) <= budget
    assert found.config.r in PREDICTOR_RESOLUTIONS
    again = resnet_search(predictor.predict, mmacs, budget, PREDICTOR_RESOLUTIONS, settings)
    assert again.config == found.config  # deterministic for a seed
    rng = random.Random(0)
    draws = [ResNetConfig.sample(rng, PREDICTOR_RESOLUTIONS) for _ in range(2000)]
    admissible = [c for c in draws if mmacs(c) <= budget]
    assert admissible and found.accuracy > max(predictor.predict(admissible))
    assert found.accuracy == pytest.approx(float(predictor.predict([found.config])[0]))


def test_an_impossible_budget_is_refused_naming_the_cheapest(predictor):
    with pytest.raises(ImpossibleBudget, match=r"the cheapest reachable is 315\.08 M MACs"):
        resnet_search(predictor.predict, mmacs, 100, PREDICTOR_RESOLUTIONS, unit="M MACs")


def write_lut(folder, resolutions):
    """A made-up ResNet50 LUT: each entry's latency proportional to its MACs (plus a
    constant, so pooling costs something)."""
    folder.mkdir()
    for r in resolutions:
        entries = [
            f"{spec.lut_key}:\n  count: 5\n  mean: {0.05 + spec.macs() / 1e8!r}\n"
            for spec in lut_specs(r, 1.0, "resnet50")
        ]
        (folder / f"{r}_lookup_table.yaml").write_text("".join(entries))


def test_specialize_searches_resnet50_on_its_lut_and_on_macs_alone(assets, tmp_path):
    lut = tmp_path / "lut"
    write_lut(lut, (160, 224))
    predictor = str(assets / "ofa_resnet50_acc_predictor.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        coord,
        ["specialize", "--acc-predictor", predictor, "--lut", str(lut), "--latency-ms", "25",
         "--latency-ms", "40", "--max-macs", "3000", "--format", "json", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    table = LatencyTable.from_ofa_yaml(lut)
    for row in rows:
        chosen = json.loads((out / f"{row['budget']:g}ms" / "result.json").read_text())
        config = ResNetConfig.from_dict(chosen["config"])
        assert row["latency_ms"] == pytest.approx(table.predict_ms(config))
        assert row["latency_ms"] <= row["budget"]
        assert count_macs(config) <= 3000e6 and config.r in (160, 224)
    assert rows[0]["accuracy"] <= rows[1]["accuracy"]
    macs_only = CliRunner().invoke(
        coord,
        ["specialize", "--acc-predictor", predictor, "--max-macs", "1200", "--out", str(out)],
    )
    assert macs_only.exit_code == 0 and "M MACs" in macs_only.output
    refused = CliRunner().invoke(
        coord,
        ["specialize", "--acc-predictor", predictor, "--lut", str(lut), "--latency-ms", "1",
         "--out", str(tmp_path / "none")],
    )  # fmt: skip
    assert refused.exit_code == 1 and "the cheapest reachable is" in refused.output
    assert not (tmp_path / "none").exists()  # nothing written
    wrong = CliRunner().invoke(
        coord,
        ["specialize", "--acc-predictor", predictor, "--lut", str(assets / "note10"),
         "--latency-ms", "20", "--out", str(tmp_path / "none")],
    )  # fmt: skip
    assert wrong.exit_code == 1 and "is no ResNet50 table" in wrong.output
