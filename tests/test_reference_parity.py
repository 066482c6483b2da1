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

N_RANDOM = 11  # per width, plus the largest and the smallest: 26 subnets in all


def parity_configs(width: float) -> list[SubnetConfig]:
    """Random subnets at random resolutions (odd ones too), plus both extremes."""
    rng = random.Random(int(width * 10))
    configs = sample_configs(N_RANDOM, seed=int(width * 10), w=width)
    configs = [c.replace(r=rng.randrange(128, 257)) for c in configs]
    return configs + [SubnetConfig.largest(r=224, w=width), SubnetConfig.smallest(r=160, w=width)]


@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def parity(request, tmp_path_factory):
    """Our supernet and subnets against the reference's, on the same weights and inputs."""
    width = request.param
    work = tmp_path_factory.mktemp(f"parity-w{width}")
    model = randomized_supernet(width, seed=7)
    torch.save({"state_dict": model.state_dict()}, work / "weights.pt")
    configs = parity_configs(width)
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
        {"width": width, "state_dict": str(work / "weights.pt"), "subnets": requests}, work
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
    mbv3 = [p for p in paths if '"MobileNetV3"' in p.read_text()]
    assert len(mbv3) == 34
    reference = run_reference(
        {
            "width": 1.0,
            "subnets": [],
            "lut_dir": str(assets / "note10"),
            "net_configs": [str(p) for p in mbv3],
        },
        tmp_path,
    )
    with_lut = 0
    for path, theirs in zip(mbv3, reference["net_configs"], strict=True):
        config = SubnetConfig.from_file(path)
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
