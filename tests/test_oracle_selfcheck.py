"""Self-check of the reference oracle against published OFA numbers, independent of the
project's own code: if this fails, comparisons against the oracle mean nothing."""

import pytest

from tests.oracle import run_reference


def spec(ks, e, d, r=224):
    return {"ks": [ks] * 20, "e": [e] * 20, "d": [d] * 5, "r": r, "input": None}


def test_reference_oracle_matches_published_numbers(tmp_path, assets):
    resp = run_reference(
        {
            "width": 1.2,
            "seed": 0,
            "state_dict": None,
            "subnets": [spec(7, 6, 4), spec(3, 3, 2)],
            "lut_dir": str(assets / "note10"),
            "net_configs": [
                str(assets / "ofa_specialized/flops-389M_top1-79.1_finetune-75/net.config")
            ],
        },
        tmp_path,
    )
    largest, smallest = resp["subnets"]
    assert largest["lut_ms"] == pytest.approx(92.40, abs=0.01)
    assert smallest["lut_ms"] == pytest.approx(17.77, abs=0.01)
    # the spec-based and the network-based latency walks must agree on the same subnet
    assert largest["lut_ms_net"] == pytest.approx(largest["lut_ms"])
    assert smallest["lut_ms_net"] == pytest.approx(smallest["lut_ms"])
    assert round(resp["net_configs"][0]["macs"] / 1e6) == 389


def test_reference_supernet_w10_has_475_keys(tmp_path):
    resp = run_reference({"width": 1.0, "seed": 0, "state_dict": None, "subnets": []}, tmp_path)
    assert len(resp["supernet_state_dict"]) == 475
