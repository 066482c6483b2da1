"""Evolutionary search with the official accuracy predictor and the Note10 tables."""

from __future__ import annotations

import numpy as np
import pytest

from ofa.accuracy import AccuracyPredictor
from ofa.batch import ConfigBatch
from ofa.config import sample_configs
from ofa.latency_model import BlockTable, fit_predictor
from ofa.lut import LatencyTable
from ofa.plan import count_macs, space_lut_specs
from ofa.search import ImpossibleBudget, SearchSettings, evolutionary_search

RESOLUTIONS = (160, 176, 192, 208, 224)
QUICK = SearchSettings(generations=40, seed=0)


@pytest.fixture(scope="module")
def predictors(assets):
    tables = LatencyTable.from_ofa_yaml(assets / "note10")
    lut = tables.means()
    latency = fit_predictor("lut", BlockTable.from_lut(lut, 1.2))
    return AccuracyPredictor.load(assets / "acc_predictor.pth"), latency, tables


def test_search_respects_the_budget_and_beats_random_sampling(predictors):
    accuracy, latency, tables = predictors
    result = evolutionary_search(accuracy.predict, latency.predict, 25.0, RESOLUTIONS, 1.2, QUICK)
    assert result.latency_ms <= 25.0
    assert tables.predict_ms(result.config) == pytest.approx(result.latency_ms)
    assert result.accuracy == pytest.approx(float(accuracy.predict([result.config])[0]))
    # as many random subnets as the search scored, keeping those within budget
    sampled = sample_configs(100 * (QUICK.generations + 1), seed=1, resolutions=RESOLUTIONS, w=1.2)
    batch = ConfigBatch.from_configs(sampled)
    within = latency.predict(batch) <= 25.0
    best_random = accuracy.predict(batch)[within].max()
    assert result.accuracy > best_random + 0.002
    assert result.history == sorted(result.history)  # elitism: the best never gets worse


def test_search_is_deterministic_for_a_seed(predictors):
    accuracy, latency, _ = predictors
    first = evolutionary_search(accuracy.predict, latency.predict, 30.0, RESOLUTIONS, 1.2, QUICK)
    again = evolutionary_search(accuracy.predict, latency.predict, 30.0, RESOLUTIONS, 1.2, QUICK)
    assert first.config == again.config and first.history == again.history


def test_an_impossible_budget_ends_at_once_naming_the_fastest_latency(predictors):
    """At once, counted rather than timed: one latency call (the fastest subnet at each
    resolution) and no accuracy call, so no generation ran."""
    accuracy, latency, _ = predictors
    calls = {"accuracy": 0, "latency": []}

    def count_accuracy(batch):
        calls["accuracy"] += 1
        return accuracy.predict(batch)

    def count_latency(batch):
        calls["latency"].append(len(batch))
        return latency.predict(batch)

    with pytest.raises(ImpossibleBudget, match=r"the fastest reachable is 9\.89 ms .* r=160"):
        evolutionary_search(count_accuracy, count_latency, 5.0, RESOLUTIONS, 1.2, QUICK)
    assert calls == {"accuracy": 0, "latency": [len(RESOLUTIONS)]}


def test_a_macs_budget_holds_too(predictors):
    accuracy, latency, _ = predictors
    macs = BlockTable.from_lut(
        {r: {s.lut_key: s.macs() for s in space_lut_specs(r, 1.2)} for r in RESOLUTIONS}, 1.2
    )
    result = evolutionary_search(
        accuracy.predict,
        latency.predict,
        40.0,
        RESOLUTIONS,
        1.2,
        QUICK,
        feasible=lambda batch: macs.lut_sum(batch) <= 300e6,
    )
    assert count_macs(result.config) <= 300e6 and result.latency_ms <= 40.0
    assert np.isclose(
        macs.lut_sum(ConfigBatch.from_configs([result.config]))[0], count_macs(result.config)
    )
