"""Evolutionary search with the official accuracy predictor and the Note10 tables."""

from __future__ import annotations

import numpy as np
import pytest

from ofa.accuracy import AccuracyPredictor
from ofa.batch import ConfigBatch
from ofa.config import sample_configs
from ofa.latency_model import BlockTable, fit_predictor
from ofa.local_search import _lagrange
from ofa.lut import LatencyTable
from ofa.plan import count_macs, space_lut_specs
from ofa.resources import resource_table
from ofa.search import ImpossibleBudget, SearchSettings, evolutionary_search, fastest_configs

RESOLUTIONS = (160, 176, 192, 208, 224)
QUICK = SearchSettings(generations=40, seed=0)


def largest(resolutions):
    """The largest subnet at each resolution."""
    n = len(resolutions)
    return ConfigBatch(
        np.full((n, 20), 2), np.full((n, 20), 2), np.full((n, 5), 4), np.array(resolutions), 1.2
    )


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


@pytest.mark.parametrize("resolutions", [(160,), (176, 208), RESOLUTIONS])
def test_no_result_is_over_budget_or_at_another_resolution(predictors, resolutions):
    """Budgets from just above the fastest reachable latency to above the slowest, with
    and without a MACs limit that binds."""
    accuracy, latency, tables = predictors
    fastest = float(latency.predict(fastest_configs(resolutions, 1.2)).min())
    macs = BlockTable.from_lut(
        {r: {s.lut_key: s.macs() for s in space_lut_specs(r, 1.2)} for r in resolutions}, 1.2
    )
    cases = [(fastest * factor, None) for factor in (1.02, 1.3, 2.0, 12.0)]
    cases.append((fastest * 3, 0.6 * float(macs.lut_sum(largest(resolutions)).min())))
    for seed, (budget, max_macs) in enumerate(cases):
        feasible = None if max_macs is None else lambda b, m=max_macs: macs.lut_sum(b) <= m
        result = evolutionary_search(
            accuracy.predict,
            latency.predict,
            budget,
            resolutions,
            1.2,
            SearchSettings(generations=3, seed=seed),
            feasible,
        )
        assert result.config.r in resolutions
        assert result.latency_ms <= budget
        assert tables.predict_ms(result.config) == pytest.approx(result.latency_ms)
        if max_macs is not None:
            assert count_macs(result.config) <= max_macs


@pytest.mark.parametrize("budget, seed", [(15.0, 3), (20.0, 4)])
def test_the_default_search_beats_plain_evolution_run_beside_it(predictors, budget, seed):
    """The default (a few generations, then the local search) against OFA's plain evolution
    at 100 generations, which costs about as much time, on the same seed."""
    accuracy, latency, _ = predictors
    default = evolutionary_search(
        accuracy.predict, latency.predict, budget, RESOLUTIONS, 1.2, SearchSettings(seed=seed)
    )
    plain = evolutionary_search(
        accuracy.predict,
        latency.predict,
        budget,
        RESOLUTIONS,
        1.2,
        SearchSettings(generations=100, local_starts=0, seed=seed),
    )
    assert plain.latency_ms <= budget and default.latency_ms <= budget
    assert default.accuracy >= plain.accuracy
    assert default.history == sorted(default.history)


def test_the_knapsack_repair_stays_within_capacity():
    """Random multiple-choice knapsacks: the choice never costs more than the capacity and
    is worth at least the all-cheapest choice."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 20, 9))
    costs = rng.random((200, 20, 9))
    costs -= costs.min(axis=2, keepdims=True)
    capacity = rng.random(200) * costs.max(axis=2).sum(axis=1)
    chosen = _lagrange(values, costs, capacity)
    picked = np.take_along_axis(costs, chosen[:, :, None], 2)[:, :, 0].sum(axis=1)
    worth = np.take_along_axis(values, chosen[:, :, None], 2)[:, :, 0].sum(axis=1)
    cheapest = np.take_along_axis(values, costs.argmin(axis=2)[:, :, None], 2)[:, :, 0]
    assert (picked <= capacity + 1e-9).all()
    assert (worth >= cheapest.sum(axis=1) - 1e-9).all()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"screens": -1}, "screens: expected an integer in 0..10000, got -1"),
        ({"local_steps": 1.5}, "local_steps: expected an integer"),
    ],
)
def test_local_search_settings_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        SearchSettings(**fields)


def test_every_batch_the_search_derives_unchecked_would_pass_the_checks(predictors, monkeypatch):
    """ConfigBatch.derive skips validation for speed; with it validating, a search must
    meet no invalid batch and find exactly the same subnet."""
    accuracy, latency, _ = predictors
    fast = evolutionary_search(accuracy.predict, latency.predict, 25.0, RESOLUTIONS, 1.2)

    def checked(self, ks, e, d, r):
        batch = ConfigBatch(ks, e, d, r, self.w, self.family)
        assert (batch.ks.dtype, batch.r.dtype) == (np.int8, np.int32)
        return batch

    monkeypatch.setattr(ConfigBatch, "derive", checked)
    slow = evolutionary_search(accuracy.predict, latency.predict, 25.0, RESOLUTIONS, 1.2)
    assert (slow.config, slow.accuracy) == (fast.config, fast.accuracy)


def test_proxylessnas_subnets_are_searched_with_their_tail_block():
    """Latency: each LUT entry's MACs (a made-up device); accuracy: the square root of the
    parameters, a stand-in scorer that grows with size as top-1 does. The search must stay
    within budget and resolutions and beat the best of 3,000 random admissible subnets."""
    resolutions = (160, 224)
    macs, params = (
        resource_table(figure, resolutions, 1.3, "proxyless") for figure in ("macs", "params")
    )

    def accuracy(batch):
        return np.sqrt(params.lut_sum(batch))

    with pytest.raises(ValueError, match="w: expected one of \\(1.3,\\) for ProxylessNAS"):
        evolutionary_search(accuracy, macs.lut_sum, 4e8, resolutions, 1.2, family="proxyless")
    result = evolutionary_search(
        accuracy, macs.lut_sum, 4e8, resolutions, 1.3, QUICK, family="proxyless"
    )
    config = result.config
    assert (config.family, len(config.ks), config.r in resolutions) == ("proxyless", 21, True)
    assert result.latency_ms == count_macs(config) <= 4e8
    drawn = ConfigBatch.from_configs(
        sample_configs(3000, 1, resolutions, w=1.3, family="proxyless")
    )
    admissible = macs.lut_sum(drawn) <= 4e8
    assert admissible.sum() > 100
    assert result.accuracy >= accuracy(drawn)[admissible].max()
