"""Supernet behaviour beyond reference parity: subnets passed per call, width checks,
elastic batch norm in training, and BN recalibration of an extracted subnet."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from ofa.config import SubnetConfig, sample_configs
from ofa.nn.bn_calibration import recalibrate_bn
from ofa.nn.supernet import OFAMobileNetV3
from ofa.plan import count_params
from tests.models import randomized_supernet


def test_subnets_passed_per_call_do_not_interfere_across_threads():
    model = randomized_supernet(1.0, seed=3)
    configs = sample_configs(6, seed=2, resolutions=(128,))
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        serial = [model(x, c) for c in configs]
        with ThreadPoolExecutor(3) as pool:
            parallel = list(pool.map(lambda c: model(x, c), configs * 3))
    for i, out in enumerate(parallel):
        assert torch.equal(out, serial[i % len(configs)])
    assert not torch.allclose(serial[0], serial[1])  # different subnets, different outputs


def test_active_subnet_is_per_instance_and_width_checked():
    a, b = OFAMobileNetV3(1.0), OFAMobileNetV3(1.0)
    small = SubnetConfig.smallest(r=128)
    a.set_active_subnet(small)
    assert a.active_subnet == small and b.active_subnet == SubnetConfig.largest()
    with pytest.raises(ValueError, match=r"w: the subnet is for width 1.2, this supernet is w1.0"):
        a.set_active_subnet(SubnetConfig.smallest(w=1.2))
    with pytest.raises(TypeError, match="subnet: expected a SubnetConfig, got dict"):
        a(torch.zeros(1, 3, 64, 64), small.to_dict())
    with pytest.raises(ValueError, match="w: expected one of"):
        OFAMobileNetV3(0.75)


def test_extracted_subnet_parameter_count_is_the_arithmetic_one():
    model = OFAMobileNetV3(1.2)
    for config in sample_configs(3, seed=5, w=1.2) + [SubnetConfig.largest(w=1.2)]:
        subnet = model.get_active_subnet(config)
        assert sum(p.numel() for p in subnet.parameters()) == count_params(config)


def test_training_a_small_subnet_updates_only_its_bn_slice():
    model = OFAMobileNetV3(1.0).train()
    config = SubnetConfig.smallest(r=64)
    bn = model.blocks[1].conv.inverted_bottleneck["bn"].bn  # 16 -> 48 of 96 channels
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64), config).sum().backward()
    changed = (bn.running_mean != before).nonzero().flatten()
    assert changed.numel() > 0 and changed.max() < 48
    grad = model.blocks[1].conv.inverted_bottleneck["conv"].conv.weight.grad
    assert grad[:48].abs().sum() > 0 and grad[48:].abs().sum() == 0


def test_recalibration_sets_running_stats_to_the_data_statistics():
    model = randomized_supernet(1.0, seed=4)
    subnet = model.get_active_subnet(SubnetConfig.smallest(r=64))
    generator = torch.Generator().manual_seed(1)
    batches = [2.0 + torch.randn(8, 3, 64, 64, generator=generator) for _ in range(3)]
    assert recalibrate_bn(subnet, batches) == 24
    assert not subnet.training
    with torch.no_grad():
        conv_out = torch.cat([subnet.first_conv.conv(b) for b in batches])
    bn = subnet.first_conv.bn
    assert torch.allclose(bn.running_mean, conv_out.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, conv_out.var((0, 2, 3)), rtol=1e-2)
    assert bn.momentum == 0.1
    with pytest.raises(ValueError, match="batches: no images"):
        recalibrate_bn(subnet, [])
