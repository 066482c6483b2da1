"""Latency predictors on the authors' Note10 tables (real LUT values), with end-to-end
"measurements" synthesised from them where the point is to check a fit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ofa import space
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig, sample_configs
from ofa.latency_model import (
    KINDS,
    PREDICTORS,
    TABLE_KINDS,
    BlockTable,
    Structure,
    Transfer,
    fit_predictor,
    load_predictor,
    n_types,
    predictor_from_dict,
)
from ofa.lut import LatencyTable
from ofa.metrics import kendall_tau, regression_metrics, spearman_rho
from ofa.plan import layer_plan, space_lut_specs

RESOLUTIONS = (160, 176, 192, 208, 224)


@pytest.fixture(scope="module")
def note10(assets):
    tables = LatencyTable.from_ofa_yaml(assets / "note10")
    lut = tables.means()
    return tables, BlockTable.from_lut(lut, 1.2)


@pytest.fixture(scope="module")
def configs():
    return sample_configs(300, seed=0, resolutions=RESOLUTIONS, w=1.2)


def test_vectorised_lut_sum_equals_the_table_sum(note10, configs):
    tables, table = note10
    expected = np.array([tables.predict_ms(c) for c in configs])
    assert np.allclose(table.lut_sum(ConfigBatch.from_configs(configs)), expected, atol=1e-9)
    plain = fit_predictor("lut", table)
    assert plain.predict([SubnetConfig.largest(224, 1.2)])[0] == pytest.approx(92.40, abs=0.005)


def test_a_lut_without_an_entry_or_resolution_is_refused(note10):
    tables, table = note10
    lut = {160: tables.means()[160]}
    lut[160].pop(next(iter(lut[160])))
    with pytest.raises(ValueError, match=r"lut: 1 entries missing, first r=160"):
        BlockTable.from_lut(lut, 1.2)
    with pytest.raises(ValueError, match=r"r: no LUT for resolution 200"):
        table.lut_sum(ConfigBatch.from_configs([SubnetConfig.smallest(200, 1.2)]))
    with pytest.raises(ValueError, match=r"w: the configs are w1.0, this predictor is w1.2"):
        fit_predictor("lut", table).predict([SubnetConfig.smallest(224, 1.0)])


def synthetic(table: BlockTable, configs, stage_factor: float = 1.0, seed: int = 0):
    """An end-to-end latency that the LUT sum misses: a scale, a cost per block, stage 3
    blocks `stage_factor` slower, and 1% noise."""
    batch = ConfigBatch.from_configs(configs)
    blocks = table.block_latencies(batch)
    blocks[:, 12:16] *= stage_factor
    truth = 1.1 * (table.fixed[table.rows(batch.r)] + blocks.sum(1)) + 0.05 * batch.active.sum(1)
    return truth * (1 + 0.01 * np.random.default_rng(seed).standard_normal(len(truth)))


def test_learned_predictors_recover_what_the_lut_sum_misses(note10, configs):
    _, table = note10
    measured = synthetic(table, configs, stage_factor=1.6)
    train, test = slice(0, 200), slice(200, 300)
    results = {}
    for kind in ("lut", "lut-corrected", "lut-ridge"):
        model = fit_predictor(kind, table, configs[train], measured[train])
        results[kind] = regression_metrics(model.predict(configs[test]), measured[test])
    assert results["lut"]["within_10pct"] < 0.2  # 10%+ low on every subnet
    assert results["lut-corrected"]["rmse_pct"] < results["lut"]["rmse_pct"] / 3
    assert results["lut-ridge"]["rmse_pct"] < 0.8 * results["lut-corrected"]["rmse_pct"]
    assert results["lut-ridge"]["within_5pct"] > 0.95 and results["lut-ridge"]["kendall_tau"] > 0.9


def test_predictors_round_trip_through_json_and_refuse_bad_files(note10, configs, tmp_path):
    _, table = note10
    measured = synthetic(table, configs)
    model = fit_predictor(
        "lut-ridge", table, configs[:100], measured[:100], provenance={"device": "note10"}
    )
    model.save(tmp_path / "p.json")
    loaded = load_predictor(tmp_path / "p.json")
    assert np.array_equal(loaded.predict(configs), model.predict(configs))
    assert loaded.provenance == {"device": "note10"}
    data = json.loads((tmp_path / "p.json").read_text())
    (tmp_path / "v2.json").write_text(json.dumps({**data, "version": 2}))
    with pytest.raises(ValueError, match="reads predictor format version 1, the file is version 2"):
        load_predictor(tmp_path / "v2.json")
    (tmp_path / "cut.json").write_text((tmp_path / "p.json").read_text()[:500])
    with pytest.raises(ValueError, match="not a predictor file"):
        load_predictor(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text(json.dumps({"ks": [3] * 20}))
    with pytest.raises(ValueError, match="format: not an ofa-fleet latency predictor"):
        load_predictor(tmp_path / "other.json")
    del data["params"]
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="params.fixed_scale: expected a finite number, got None"):
        load_predictor(tmp_path / "broken.json")


def _set(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for name in parents:
        data = data[name]
    data[last] = value(data[last]) if callable(value) else value


@pytest.mark.parametrize(
    "path, value, message",
    [
        (
            "table.blocks",
            lambda b: b[:-1],
            r"table.blocks: expected shape \(5, 20, 3, 3\), got \(4,",
        ),
        (
            "table.blocks",
            lambda b: [b[0]] + [[1.0]] * 4,
            r"table.blocks: expected a \(nested\) list of numbers",
        ),
        ("table.fixed", lambda f: [float("nan")] + f[1:], "table.fixed: expected finite numbers"),
        ("table.fixed", lambda f: f[:3], r"table.fixed: expected shape \(5\), got \(3,\)"),
        ("table.resolutions", [224, 208, 192, 176, 160], "table.resolutions: expected increasing"),
        (
            "table.resolutions",
            [160, 176, 192, 208, 224.5],
            "table.resolutions: expected increasing",
        ),
        ("table.resolutions", [160, "176", 192, 208, 224], "table.resolutions: expected a .*list"),
        ("table.width", 1.1, r"table.width: expected one of \(1.0, 1.2\) for MobileNetV3, got 1.1"),
        ("table.width", "1.2", "table.width: expected a finite number, got '1.2'"),
        (
            "table.family",
            "resnet50",
            "table.family: expected one of mbv3, proxyless, got 'resnet50'",
        ),
        ("table.family", "proxyless", r"table.width: expected one of \(1.3,\) for ProxylessNAS"),
        ("table", [1, 2], "table: expected an object, got list"),
        ("params.multipliers", lambda m: m[:89], r"params.multipliers: expected shape \(90\)"),
        (
            "params.multipliers",
            lambda m: [float("inf")] + m[1:],
            "params.multipliers: expected finite",
        ),
        ("params.offset", float("inf"), "params.offset: expected a finite number, got inf"),
        ("params.per_block", True, "params.per_block: expected a finite number, got True"),
        ("params.per_block", None, "params.per_block: expected a finite number, got None"),
        ("params", [], "params: expected an object, got list"),
        ("kind", "lut-magic", "kind: expected one of lut, lut-corrected, lut-ridge, structure"),
    ],
)
def test_a_tampered_predictor_file_is_refused_naming_the_field(
    note10, configs, tmp_path, path, value, message
):
    """Well-formed JSON whose values are wrong: refused with the field, never a traceback and
    never a predictor that answers NaN (json.loads reads NaN and Infinity)."""
    _, table = note10
    data = fit_predictor("lut-ridge", table, configs[:50], synthetic(table, configs[:50])).to_dict()
    _set(data, path, value)
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        load_predictor(tmp_path / "p.json")
    assert "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path / "p.json"))


def test_a_transfer_predictor_with_a_tampered_source_is_refused(note10, configs, tmp_path):
    _, table = note10
    measured = synthetic(table, configs[:50])
    data = Transfer.fit(
        fit_predictor("lut-corrected", table, configs[:50], measured), configs[:5], measured[:5]
    ).to_dict()
    for path, value, message in (
        ("source.params.scale", float("nan"), "source.params.scale"),
        ("source", None, "source: a transfer predictor needs"),
        ("params.scale", "2", "params.scale: expected a finite number"),
        (
            "source",
            lambda s: {**s, "kind": "transfer"},
            "source.kind: expected lut, lut-corrected, lut-ridge or structure",
        ),
    ):
        tampered = json.loads(json.dumps(data))
        _set(tampered, path, value)
        (tmp_path / "t.json").write_text(json.dumps(tampered))
        with pytest.raises(ValueError, match=message):
            load_predictor(tmp_path / "t.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a predictor file"):
        load_predictor(tmp_path / "deep.json")


def test_transfer_adapts_another_devices_predictor_from_a_few_measurements(note10, configs):
    _, table = note10
    source = fit_predictor("lut-corrected", table, configs[:200], synthetic(table, configs[:200]))
    target = 0.5 * synthetic(table, configs, seed=3) + 0.7  # a faster device
    adapted = Transfer.fit(source, configs[:10], target[:10])
    assert adapted.scale == pytest.approx(0.5, rel=0.05)
    assert regression_metrics(adapted.predict(configs[200:]), target[200:])["within_5pct"] > 0.9
    again = predictor_from_dict(json.loads(json.dumps(adapted.to_dict())))
    assert np.allclose(again.predict(configs[:5]), adapted.predict(configs[:5]))
    with pytest.raises(ValueError, match="at least 4 subnets"):
        fit_predictor("lut-ridge", table, configs[:2], target[:2])
    with pytest.raises(ValueError, match="source.kind: expected lut, .*, lut-ridge or structure"):
        Transfer.fit(adapted, configs[:10], target[:10])
    with pytest.raises(ValueError, match="kind: expected lut, lut-corrected or lut-ridge, got"):
        fit_predictor("transfer", table, configs[:10], target[:10])


def test_structure_needs_no_lut_and_learns_the_space_from_subnets_alone(note10, configs):
    """Trained on 200 subnets' end-to-end latencies only (the LUT serves only to make them
    up), held out 100. Seen on this data: 2.3% RMSE, every subnet within 10%, tau 0.95; on
    50 subnets 7.2%: it needs more measurements than the kinds that start from a LUT."""
    _, table = note10
    measured = synthetic(table, configs, stage_factor=1.6)
    model = Structure.fit(configs[:200], measured[:200])
    scores = regression_metrics(model.predict(configs[200:]), measured[200:])
    assert scores["rmse_pct"] < 5 and scores["within_10pct"] >= 0.95, scores
    assert scores["kendall_tau"] > 0.9, scores
    assert model.width == 1.2 and model.resolutions.tolist() == list(RESOLUTIONS)
    with pytest.raises(ValueError, match=r"r: not fitted at resolution 128; this predictor knows"):
        model.predict([configs[0].replace(r=128)])
    again = predictor_from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(again.predict(configs[:20]), model.predict(configs[:20]))
    adapted = Transfer.fit(model, configs[:10], 2 * measured[:10])  # a device twice as slow
    assert adapted.scale == pytest.approx(2, rel=0.1)
    with pytest.raises(ValueError, match="configs: structure needs end-to-end measurements"):
        Structure.fit(configs[:3], measured[:3])


def test_each_kind_keeps_the_version_1_file_layout(note10, configs):
    """Files written before the kinds became classes still load: every kind saves the same
    fields, its numbers under the same names; files written before families were recorded
    (no `family` beside `width`) load as MobileNetV3."""
    _, table = note10
    measured = synthetic(table, configs[:50])
    fitted = {
        kind: fit_predictor(kind, table, configs[:50], measured)
        for kind in ("lut", "lut-corrected", "lut-ridge")
    }
    fitted["structure"] = Structure.fit(configs[:50], measured)
    fitted["transfer"] = Transfer.fit(fitted["lut-ridge"], configs[:5], measured[:5])
    params = {
        "lut": set(),
        "lut-corrected": {"scale", "offset", "per_block"},
        "lut-ridge": {"multipliers", "fixed_scale", "per_block", "offset", "alpha"},
        "structure": {
            "family",
            "width",
            "resolutions",
            "deviations",
            "per_block",
            "per_area",
            "offset",
            "alpha",
        },
        "transfer": {"scale", "offset"},
    }
    kinds = ("lut", "lut-corrected", "lut-ridge", "structure", "transfer")
    assert KINDS == tuple(PREDICTORS) == kinds
    for kind, model in fitted.items():
        data = model.to_dict()
        assert list(data) == [
            "format",
            "version",
            "kind",
            "table",
            "params",
            "source",
            "provenance",
            "metrics",
        ]
        assert (data["format"], data["version"], data["kind"]) == (
            "ofa-fleet/latency-predictor",
            1,
            kind,
        )
        assert set(data["params"]) == params[kind]
        assert (data["table"] is None) == (kind in ("structure", "transfer"))
        assert (data["source"] is not None) == (kind == "transfer")
        assert type(predictor_from_dict(data)) is PREDICTORS[kind]
        for fields in (data["table"], data["params"], (data["source"] or {}).get("table")):
            if fields and "family" in fields:
                assert fields.pop("family") == "mbv3"
        assert predictor_from_dict(data).family == "mbv3"


def test_details_are_given_when_a_predictor_is_made(note10, configs):
    _, table = note10
    model = fit_predictor("lut", table, provenance={"device": "note10"})
    scored = model.with_details(metrics={"held_out": {"n": 3}})
    assert scored.provenance == {"device": "note10"} and scored.metrics == {"held_out": {"n": 3}}
    assert model.metrics == {}  # a copy: the fitted predictor is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.metrics = {}  # type: ignore[misc]
    assert np.array_equal(scored.predict(configs[:5]), model.predict(configs[:5]))
    assert model.resolutions.tolist() == list(RESOLUTIONS) and model.width == 1.2


def test_metrics_on_known_values():
    measured = np.array([10.0, 20.0, 30.0, 40.0])
    perfect = regression_metrics(measured, measured)
    assert perfect["rmse_ms"] == 0 and perfect["within_5pct"] == 1 and perfect["kendall_tau"] == 1
    off = regression_metrics(measured * 1.08, measured)
    assert off["mape_pct"] == pytest.approx(8) and off["within_5pct"] == 0
    assert off["within_10pct"] == 1 and off["spearman_rho"] == pytest.approx(1)
    a, b = np.array([1, 2, 2, 3, 5.0]), np.array([2, 1, 3, 3, 4.0])
    assert spearman_rho(a, b) == pytest.approx(0.7631578947)  # average ranks for ties
    assert kendall_tau(a, b) == pytest.approx(0.6666666667)  # tau-b
    assert kendall_tau(2 * b + 1, b) == pytest.approx(1) and kendall_tau(-b, b) == pytest.approx(-1)
    with pytest.raises(ValueError, match="two equal-length series"):
        regression_metrics(measured[:2], measured)


def test_proxylessnas_predictors_of_every_kind(tmp_path):
    """ProxylessNAS's table holds 21 blocks (the tail one always runs) and 108 block types;
    a LUT whose entries are their MACs sums to the plan's MACs of each subnet exactly."""
    resolutions = (160, 224)
    lut = {
        r: {s.lut_key: float(s.macs()) for s in space_lut_specs(r, 1.3, "proxyless")}
        for r in resolutions
    }
    table = BlockTable.from_lut(lut, 1.3, "proxyless")
    assert table.blocks.shape == (2, 21, 3, 3)
    configs = sample_configs(120, 5, resolutions, w=1.3, family="proxyless")
    plan_macs = [sum(s.macs() for s in layer_plan(c)) for c in configs]
    assert np.allclose(table.lut_sum(ConfigBatch.from_configs(configs)), plan_macs, rtol=1e-12)
    table = dataclasses.replace(table, fixed=table.fixed / 1e6, blocks=table.blocks / 1e6)
    measured = synthetic(table, configs)
    fitted = [fit_predictor(k, table, configs, measured) for k in TABLE_KINDS]
    fitted.append(Structure.fit(configs, measured))
    fitted.append(Transfer.fit(fitted[0], configs[:5], measured[:5]))
    for model in fitted:
        path = tmp_path / f"{model.kind}.json"
        model.save(path)
        loaded = load_predictor(path)
        assert loaded.family == "proxyless" and loaded.width == 1.3
        assert np.array_equal(loaded.predict(configs), model.predict(configs))
        if model.kind != "lut":  # the others learn the scale and per-block cost it misses
            error = np.abs(model.predict(configs) / measured - 1)
            assert np.median(error) < 0.05, model.kind
    assert len(fitted[-2].deviations) == n_types(space.PROXYLESS) == 108
    with pytest.raises(ValueError, match="family: the configs are MobileNetV3 subnets, this"):
        fitted[0].predict([SubnetConfig.smallest(224, 1.2)])
    others = sample_configs(8, 5, resolutions, w=1.2)
    with pytest.raises(ValueError, match="^configs: the subnets are MobileNetV3 w1.2, the LUT Pr"):
        fit_predictor("lut-corrected", table, others, [1.0] * 8)
