"""OFA's own latency model on the authors' Note10 tables (w1.2)."""

from __future__ import annotations

import pytest

from ofa.config import SubnetConfig
from ofa.lut import LatencyTable
from ofa.plan import count_macs, lut_keys


@pytest.fixture(scope="module")
def note10(assets) -> LatencyTable:
    return LatencyTable.from_ofa_yaml(assets / "note10")


def test_note10_tables_have_96_keys_per_resolution(note10):
    assert note10.resolutions == [160, 176, 192, 208, 224]
    assert all(len(table) == 96 for table in note10.entries.values())


@pytest.mark.parametrize(
    "config, expected_ms",
    [
        (SubnetConfig.largest(224, 1.2), 92.40),
        (SubnetConfig.smallest(224, 1.2), 17.77),
        (SubnetConfig.largest(160, 1.2), 47.77),
        (SubnetConfig.smallest(160, 1.2), 9.89),
    ],
)
def test_extreme_subnets_sum_to_the_published_figures(note10, config, expected_ms):
    assert note10.missing_keys(config) == []
    assert note10.predict_ms(config) == pytest.approx(expected_ms, abs=0.005)


def test_published_w12_specialised_subnets_resolve_and_sum(note10, assets):
    nets = {
        p.parent.name: SubnetConfig.from_file(p)
        for p in assets.glob("ofa_specialized/*/net.config")
        if '"MobileNetV3"' in p.read_text()
    }
    in_tables = [c for c in nets.values() if c.w == 1.2 and c.r in note10.entries]
    assert len(in_tables) == 4
    for config in in_tables:
        assert note10.missing_keys(config) == []
    assert note10.predict_ms(nets["note10_lat-30ms_top1-78.4_finetune-75"]) == pytest.approx(
        29.97, abs=0.005
    )
    assert round(count_macs(nets["flops-389M_top1-79.1_finetune-75"]) / 1e6) == 389
    assert round(count_macs(nets["flops-482M_top1-79.6_finetune-75"]) / 1e6) == 482


def test_lut_keys_are_spelled_like_ofa():
    keys = lut_keys(SubnetConfig.smallest(224, 1.2))
    assert keys[0] == "Conv-input:224x224x3-output:112x112x24"
    assert keys[1] == (
        "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3"
        "-stride:1-idskip:1-se:0-hs:0"
    )
    assert keys[2] == (
        "expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:3"
        "-stride:2-idskip:0-se:0-hs:0"
    )
    assert keys[-4:] == [
        "Conv_1-input:7x7x192-output:7x7x1152",
        "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
    ]
    assert len(keys) == 1 + 1 + 10 + 4


def test_missing_entries_and_resolutions_are_errors_not_zeros(note10):
    with pytest.raises(ValueError, match=r"r: no table for resolution 200"):
        note10.predict_ms(SubnetConfig.largest(200, 1.2))
    w10 = SubnetConfig.largest(224, 1.0)  # the Note10 tables only hold w1.2 layers
    assert len(note10.missing_keys(w10)) > 0
    with pytest.raises(ValueError, match=r"LUT key\(s\) missing, first Conv-input:224x224x3"):
        note10.predict_ms(w10)


def test_a_folder_without_tables_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no {r}_lookup_table.yaml files found"):
        LatencyTable.from_ofa_yaml(tmp_path)
