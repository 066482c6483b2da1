"""The accuracy-latency front (`ofa.front`) with the official accuracy predictor and the
Note10 tables: every budget read off it at once."""

from __future__ import annotations

import numpy as np
import pytest

from ofa.accuracy import AccuracyPredictor
from ofa.batch import ConfigBatch
from ofa.front import pareto_front
from ofa.latency_model import BlockTable, fit_predictor
from ofa.lut import LatencyTable
from ofa.plan import space_lut_specs
from ofa.search import ImpossibleBudget, SearchSettings, evolutionary_search

RESOLUTIONS = (160, 176, 192, 208, 224)
QUICK = SearchSettings(generations=3, seed=5)


@pytest.fixture(scope="module")
def predictors(assets):
    latency = fit_predictor(
        "lut", BlockTable.from_lut(LatencyTable.from_ofa_yaml(assets / "note10").means(), 1.2)
    )
    return AccuracyPredictor.load(assets / "acc_predictor.pth"), latency


def test_the_front_is_monotone_and_every_point_meets_its_constraints(predictors):
    accuracy, latency = predictors
    macs = BlockTable.from_lut(
        {r: {s.lut_key: s.macs() for s in space_lut_specs(r, 1.2)} for r in (176, 208)}, 1.2
    )
    front = pareto_front(
        accuracy.predict,
        latency.predict,
        [18.0, 30.0],
        (176, 208),
        1.2,
        QUICK,
        feasible=lambda batch: macs.lut_sum(batch) <= 400e6,
    )
    assert len(front) > 2
    assert (np.diff(front.latency_ms) >= 0).all() and (np.diff(front.accuracy) > 0).all()
    assert set(front.configs.r.tolist()) <= {176, 208}
    assert (macs.lut_sum(front.configs) <= 400e6).all()
    np.testing.assert_allclose(latency.predict(front.configs), front.latency_ms)
    np.testing.assert_allclose(accuracy.predict(front.configs), front.accuracy)
    for budget in (18.0, 23.5, 30.0, 99.0):  # searched, between, searched, above all
        config, top1, latency_ms = front.best_within(budget)
        assert latency_ms <= budget and config.r in (176, 208)
        assert top1 == front.accuracy[front.latency_ms <= budget].max()


def test_each_budget_reads_off_at_least_its_own_search(predictors):
    accuracy, latency = predictors
    budgets = [14.0, 21.0]
    front = pareto_front(accuracy.predict, latency.predict, budgets, RESOLUTIONS, 1.2, QUICK)
    for budget in budgets:
        alone = evolutionary_search(
            accuracy.predict, latency.predict, budget, RESOLUTIONS, 1.2, QUICK
        )
        assert front.best_within(budget)[1] >= alone.accuracy


def test_impossible_budgets_are_refused_naming_the_fastest_reachable(predictors):
    """All budgets impossible: refused before any accuracy call. One possible: the front is
    searched, and reading the impossible one off it names the fastest latency."""
    accuracy, latency = predictors
    calls = []

    def count_accuracy(batch: ConfigBatch) -> np.ndarray:
        calls.append(len(batch))
        return accuracy.predict(batch)

    with pytest.raises(ImpossibleBudget, match=r"the fastest reachable is 9\.89 ms"):
        pareto_front(count_accuracy, latency.predict, [4.0, 6.0], RESOLUTIONS, 1.2, QUICK)
    assert calls == []
    front = pareto_front(accuracy.predict, latency.predict, [6.0, 12.0], RESOLUTIONS, 1.2, QUICK)
    assert front.latency_ms[0] == pytest.approx(9.89, abs=0.005)
    with pytest.raises(
        ImpossibleBudget, match=r"no subnet meets 6 ms; the fastest reachable is 9\.89"
    ):
        front.best_within(6.0)
    with pytest.raises(ValueError, match="budgets_ms: expected at least one budget"):
        pareto_front(accuracy.predict, latency.predict, [], RESOLUTIONS, 1.2, QUICK)
