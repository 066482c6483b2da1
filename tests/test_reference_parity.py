"""Parity with the reference implementation (PyPI `ofa==0.1.0.post202307202001`), run in its
own process by tests/oracle: same weights give the same logits, state dicts and counts."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ofa import plan
from ofa.config import SubnetConfig, sample_configs
from ofa.lut import LatencyTable
from tests.models import randomized_supernet
from tests.oracle import run_reference

N_RANDOM = 11  # per supernet, plus the largest and the smallest: 39 subnets in all


def parity_configs(width: float, family: str) -> list[SubnetConfig]:
    """Random subnets at random resolutions (odd ones too), plus both extremes."""
    rng = random.Random(int(width * 10))
    configs = sample_configs(N_RANDOM, seed=int(width * 10), w=width, family=family)
    configs = [c.replace(r=rng.randrange(128, 257)) for c in configs]
    return configs + [
        SubnetConfig.largest(r=224, w=width, family=family),
        SubnetConfig.smallest(r=160, w=width, family=family),
    ]


@pytest.fixture(
    scope="module",
    params=[("mbv3", 1.0), ("mbv3", 1.2), ("proxyless", 1.3)],
    ids=["mbv3-w1.0", "mbv3-w1.2", "proxyless-w1.3"],
)
def parity(request, tmp_path_factory):
    """Our supernet and subnets against the reference's, on the same weights and inputs."""
    family, width = request.param
    work = tmp_path_factory.mktemp(f"parity-{family}-w{width}")
    model = randomized_supernet(width, seed=7, family=family)
    torch.save({"state_dict": model.state_dict()}, work / "weights.pt")
    configs = parity_configs(width, family)
    requests, ours = [], []
    for i, config in enumerate(configs):
        x = np.random.default_rng(i).standard_normal((1, 3, config.r, config.r)).astype(np.float32)
        np.save(work / f"x{i}.npy", x)
        requests.append({**config.to_dict(), "input": str(work / f"x{i}.npy")})
        with torch.no_grad():
            subnet = model.get_active_subnet(config).eval()
            ours.append(
                {
                    "super": model(torch.from_numpy(x), config).numpy(),
                    "sub": subnet(torch.from_numpy(x)).numpy(),
                    "sub_state": {k: list(v.shape) for k, v in subnet.state_dict().items()},
                }
            )
    reference = run_reference(
        {
            "family": family,
            "width": width,
            "state_dict": str(work / "weights.pt"),
            "subnets": requests,
        },
        work,
    )
    return model, configs, ours, reference


def test_supernet_state_dict_keys_and_shapes_match(parity):
    model, _, _, reference = parity
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference["supernet_state_dict"]


def test_logits_match_reference_within_1e5(parity):
    _, configs, ours, reference = parity
    for config, mine, theirs in zip(configs, ours, reference["subnets"], strict=True):
        ref_super = np.load(theirs["logits_super"])
        ref_sub = np.load(theirs["logits_sub"])
        for name, logits in (("supernet", mine["super"]), ("subnet", mine["sub"])):
            err = np.abs(logits - ref_super).max()
            assert err <= 1e-5, f"{config.id} r={config.r} {name}: max |diff| {err:.2e}"
        assert np.abs(ref_sub - ref_super).max() <= 1e-5
        # the randomised weights must give non-trivial outputs, or the comparison is empty
        assert ref_super.std() > 1e-3


def test_subnet_state_dicts_match(parity):
    _, configs, ours, reference = parity
    for config, mine, theirs in zip(configs, ours, reference["subnets"], strict=True):
        assert mine["sub_state"] == theirs["state_dict"], config.id


def test_macs_and_params_match_reference_counter(parity):
    _, configs, _, reference = parity
    for config, theirs in zip(configs, reference["subnets"], strict=True):
        # the reference accumulates its counts in float32 tensors (64-MAC steps near 5e8),
        # so its MACs carry a rounding error of a few tens; ours are exact integers
        assert plan.count_macs(config) == pytest.approx(theirs["macs"], rel=1e-6), config.id
        assert plan.count_params(config) == theirs["params"], config.id


def test_published_net_configs_count_like_the_reference(assets, tmp_path):
    paths = sorted(assets.glob("ofa_specialized/*/net.config"))
    reference = run_reference(
        {
            "width": 1.0,
            "subnets": [],
            "lut_dir": str(assets / "note10"),
            "net_configs": [str(p) for p in paths],
        },
        tmp_path,
    )
    with_lut, families = 0, []
    for path, theirs in zip(paths, reference["net_configs"], strict=True):
        config = SubnetConfig.from_file(path)
        families.append(config.family)
        assert config.r == theirs["image_size"], path.parent.name
        assert plan.count_macs(config) == pytest.approx(theirs["macs"], rel=1e-6), path.parent.name
        assert plan.count_params(config) == theirs["params"], path.parent.name
        if theirs.get("lut_ms_net") is not None:  # w1.2 nets at a Note10 resolution
            assert plan.lut_keys(config) == theirs["lut_keys_net"], path.parent.name
            assert LatencyTable.from_ofa_yaml(assets / "note10").predict_ms(
                config
            ) == pytest.approx(theirs["lut_ms_net"], rel=1e-12)
            with_lut += 1
    assert with_lut == 4
    # all 50 published nets: 34 MobileNetV3 (w1.0, w1.2), 16 ProxylessNAS (w1.3)
    assert (families.count("mbv3"), families.count("proxyless")) == (34, 16)


def test_lut_keys_and_sums_match_reference_on_note10(assets, tmp_path):
    configs = [
        c.replace(r=r)
        for c, r in zip(
            sample_configs(10, seed=3, w=1.2), [160, 176, 192, 208, 224] * 2, strict=True
        )
    ]
    reference = run_reference(
        {
            "width": 1.2,
            "subnets": [{**c.to_dict(), "input": None} for c in configs],
            "lut_dir": str(assets / "note10"),
        },
        tmp_path,
    )
    table = LatencyTable.from_ofa_yaml(assets / "note10")
    for config, theirs in zip(configs, reference["subnets"], strict=True):
        assert plan.lut_keys(config) == theirs["lut_keys"]
        assert plan.lut_keys(config) == theirs["lut_keys_net"]
        assert table.predict_ms(config) == pytest.approx(theirs["lut_ms"], rel=1e-12)


def test_proxyless_lut_keys_and_sums_match_the_reference_table_reader(assets, tmp_path):
    """Our ProxylessNAS LUT keys, in ProxylessNAS's `mobile_trim.yaml` spelling, are the keys
    the reference's ProxylessNASLatencyTable looks up for each published ProxylessNAS net,
    in order, and its sum over a table of made-up latencies is ours."""
    paths = [
        p
        for p in sorted(assets.glob("ofa_specialized/*/net.config"))
        if '"ProxylessNASNets"' in p.read_text()
    ]
    configs = [SubnetConfig.from_file(p) for p in paths]
    keys = sorted({key for config in configs for key in plan.lut_keys(config)})
    latency = {key: 0.5 + i / 7 for i, key in enumerate(keys)}  # distinct, so order shows
    table = tmp_path / "proxyless_lut.yaml"
    entries = [f"{key}:\n  count: 1\n  mean: {ms!r}\n" for key, ms in latency.items()]
    table.write_text("".join(entries))
    reference = run_reference(
        {
            "width": 1.0,
            "subnets": [],
            "proxyless_lut": str(table),
            "net_configs": [str(p) for p in paths],
        },
        tmp_path,
    )
    assert len(configs) == 16
    for path, config, theirs in zip(paths, configs, reference["net_configs"], strict=True):
        assert plan.lut_keys(config) == theirs["lut_keys_net"], path.parent.name
        ours = sum(latency[key] for key in plan.lut_keys(config))
        assert ours == pytest.approx(theirs["lut_ms_net"], rel=1e-12), path.parent.name
