"""Peak memory as a budget of the search: each layer's activation working set, the
vectorised figures over a batch of configs, the model fit to a device's measured peaks,
and `specialize --max-peak-mb` on a device whose real agent recorded its peak memory while
measuring subnets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig, sample_configs
from ofa.plan import MBCONV, LayerSpec, count_params, layer_plan
from ofa.resources import MIN_MEMORY_SUBNETS, MemoryModel, ResourceFigures


def test_an_mbconv_keeps_its_input_for_the_residual_and_its_expanded_tensors():
    block = LayerSpec(MBCONV, (8, 8, 4), (8, 8, 4), mid=24, kernel=3, idskip=True, has_expand=True)
    # expand: input 256 + mid 1536; depthwise: mid 1536 + mid 1536 + input kept 256;
    # project: mid 1536 + output 256 + input 256
    assert block.activations() == 1536 + 1536 + 256
    strided = LayerSpec(MBCONV, (8, 8, 4), (4, 4, 8), mid=24, kernel=3, stride=2, has_expand=True)
    assert strided.activations() == 1536 + 384  # the depthwise conv's input and output
    assert layer_plan(SubnetConfig.smallest(r=32))[-1].activations() == 1280 + 1000


def test_the_batch_figures_are_the_layer_plans_sum_of_parameters_and_largest_activations():
    configs = sample_configs(30, seed=5, resolutions=(160, 192, 224), w=1.2)
    figures = ResourceFigures.of((160, 192, 224), 1.2).features(ConfigBatch.from_configs(configs))
    params = [count_params(c) / 1e6 for c in configs]
    largest = [max(layer.activations() for layer in layer_plan(c)) / 1e6 for c in configs]
    np.testing.assert_allclose(figures[:, 0], params, rtol=1e-12)
    np.testing.assert_allclose(figures[:, 1], largest, rtol=1e-12)


def test_the_fit_recovers_a_device_and_drops_a_coefficient_noise_makes_negative():
    configs = sample_configs(40, seed=6, resolutions=(160, 224), w=1.0)
    x = ResourceFigures.of((160, 224), 1.0).features(ConfigBatch.from_configs(configs))
    noise = np.random.default_rng(0).normal(0, 0.5, len(configs))
    peaks = 150 + 4.0 * x[:, 0] + 8 * 4.0 * x[:, 1] + noise  # batch 8: 4 bytes a value
    model = MemoryModel.fit(configs, peaks, batch=8)
    assert model.base_mb == pytest.approx(150, abs=3)
    assert model.per_param_mb == pytest.approx(4.0, rel=0.1)
    assert model.per_activation_mb == pytest.approx(4.0, rel=0.05)
    assert model.rmse_mb < 1 and model.n == 40
    shrinking = 150 - 3.0 * x[:, 0] + 8 * 4.0 * x[:, 1]
    assert MemoryModel.fit(configs, shrinking, batch=8).per_param_mb == 0.0
    assert model.resolutions == (160, 224)
    with pytest.raises(ValueError, match=f"at least {MIN_MEMORY_SUBNETS} are needed"):
        MemoryModel.fit(configs[:3], peaks[:3], batch=8)
    wide = [c.replace(w=1.2) for c in configs[:20]]
    with pytest.raises(
        ValueError,
        match=r"one supernet at a time, got ofa_mbv3_d234_e346_k357_w1.0, ofa_mbv3_\S+_w1.2$",
    ):
        MemoryModel.fit(configs[:20] + wide, np.concatenate([peaks[:20]] * 2), batch=8)


def test_specialize_keeps_the_pick_within_the_devices_peak_memory(assets, tmp_path):
    """Eight subnets measured by a real agent give the memory model; the latency model is
    the Note10 LUT stored as the device's predictor (a LUT campaign would add nothing here
    but minutes)."""
    from coordinator.services.predictor_data import predictor_path
    from coordinator.services.targets import Target
    from ofa.latency_model import BlockTable, fit_predictor
    from ofa.lut import LatencyTable
    from ofa.search import fastest_configs
    from tests.fleet import W12_AT_160, cpu_fleet, run_campaign
    from tests.test_specialize import run

    fleet = cpu_fleet(tmp_path / "fleet")
    try:
        run_campaign(fleet.db, "--name", "w12", "--workload", "random", "--count", "8", *W12_AT_160)
    finally:
        fleet.close()
    model = fit_predictor(
        "lut", BlockTable.from_lut(LatencyTable.from_ofa_yaml(assets / "note10").means(), 1.2)
    )
    model.save(predictor_path(fleet.db, "cpu", "lut", Target().name))
    budget = round(3 * float(model.predict(fastest_configs([160], 1.2))[0]), 2)
    search = [
        "--db", fleet.db, "--device", "cpu", "--kind", "lut", "--latency-ms", budget,
        "--acc-predictor", assets / "acc_predictor.pth", "--generations", "3",
        "--resolutions", "160",  # the memory model knows only what was measured
    ]  # fmt: skip

    def pick(name: str, *args) -> dict:
        run(*search, *args, "--out", tmp_path / name)
        return json.loads((tmp_path / name / f"{budget:g}ms" / "result.json").read_text())

    free = pick("free")
    assert "peak_mb" not in free
    said = run(*search, "--max-peak-mb", "1", "--out", tmp_path / "no", expect=1)
    smallest = float(said.split("the smallest reachable is ")[1].split()[0])
    assert "max_peak_mb: no subnet is predicted within 1 MB of peak memory on cpu" in said
    assert "fit on 8 measured subnets" in said  # what the agent recorded, all of it
    assert 50 < smallest < 5000  # a Python process running onnxruntime: tens to thousands of MB
    probe = pick("probe", "--max-peak-mb", 1e6)  # binds nothing: the same pick, and its peak
    assert probe["id"] == free["id"] and probe["peak_mb"] >= smallest - 0.05  # printed .1f
    assert "peak_mb" in (tmp_path / "probe" / "pareto.csv").read_text().splitlines()[0]
    lut = run(
        "--lut", assets / "note10", "--latency-ms", 30, "--max-peak-mb", 500,
        "--acc-predictor", assets / "acc_predictor.pth", "--out", tmp_path / "lut", expect=1,
    )  # fmt: skip
    assert "max_peak_mb: peak memory is fit on a device's measurements" in lut


def test_a_peak_memory_budget_binds_the_search(assets, tmp_path):
    """A known memory model (no device needed for it), so that the limit surely lies
    between the smallest subnet's peak and the unconstrained pick's."""
    from coordinator.services.specialise import (
        PeakMemory,
        SpecialiseSettings,
        lut_folder_predictor,
        specialise,
    )
    from ofa.accuracy import AccuracyPredictor

    latency = lut_folder_predictor(assets / "note10")
    accuracy = AccuracyPredictor.load(assets / "acc_predictor.pth")
    model = MemoryModel(100.0, 4.0, 4.0, batch=1, rmse_mb=0.0, n=100, resolutions=(160, 224))
    source = {"device": None, "lut": "note10"}
    (free,) = specialise(latency, accuracy, [30], tmp_path / "free", source)
    figures = ResourceFigures.of([160, 176, 192, 208, 224], 1.2)
    peak = float(model.predict(figures, ConfigBatch.from_configs([free.config]))[0])
    least = float(
        model.predict(figures, ConfigBatch.from_configs([SubnetConfig.smallest(r=160, w=1.2)]))[0]
    )
    limit = (least + peak) / 2
    settings = SpecialiseSettings(max_peak_mb=limit)
    peak_budget = PeakMemory(limit, model, "x")
    (bound,) = specialise(
        latency, accuracy, [30], tmp_path / "bound", source, settings, peak=peak_budget
    )
    assert bound.peak_mb is not None and least <= bound.peak_mb <= limit < peak
    assert bound.latency_ms <= 30 and bound.accuracy < free.accuracy
    narrow = PeakMemory(limit, dataclasses.replace(model, resolutions=(160, 176)), "x")
    with pytest.raises(ValueError, match=r"fit on subnets measured at 160..176 px and cannot "
                       r"say what \[192, 208, 224\] cost"):  # fmt: skip
        specialise(latency, accuracy, [30], tmp_path / "no", source, settings, peak=narrow)
    with pytest.raises(ValueError, match="give the device's PeakMemory"):
        specialise(latency, accuracy, [30], tmp_path / "no", source, settings)
