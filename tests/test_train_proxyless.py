"""Progressive shrinking of ProxylessNAS (w1.3) on scikit-learn's digits: its shipped chain
through the CLI, the reference loading the result with the same logits, and an accuracy
dataset of its subnets. (A file of its own, so that pytest-xdist runs it beside the
MobileNetV3 chain of test_train.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from coordinator.cli.app import main
from ofa import space
from ofa.config import SubnetConfig
from ofa.nn.accuracy_training import read_accuracy_pairs
from ofa.nn.checkpoint import load_supernet
from ofa.nn.supernet import OFAProxylessNAS
from ofa.nn.train import CHECKPOINT, EVALUATION
from tests.trained import SCHEDULES, assert_reference_logits, evaluations, run_chain

CHAIN = SCHEDULES / "digits-proxyless" / "chain.json"
# Top-1 on the 359 validation digits (chance: 0.1), measured with the shipped schedule on an
# Intel Xeon, 3 chains with every phase's seed set to 0-2 (another CPU's float rounding sends a
# run off like another seed): the full network after the full phase 0.864-0.947; in the later
# phases largest 0.409-0.891, random 0.304-0.696, smallest 0.173-0.357. ProxylessNAS's small
# subnets learn little in these 6-15-step phases (MobileNetV3's smallest reach 0.39-0.63), so
# the bounds are looser than test_train.py's; each sits >= 0.05 below the lowest figure.
FULL_ABOVE = 0.80
SAMPLED_ABOVE = 0.25
SMALLEST_ABOVE = 0.12


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("proxyless-chain")
    try:
        run_chain(CHAIN, out, "--family", "proxyless")
    finally:
        torch.set_num_threads(threads)  # --threads 1 set it for this process
    return out


def test_every_phase_trains_proxylessnas_subnets_above_chance(chain_run):
    top1 = evaluations(CHAIN, chain_run)
    assert list(top1) == ["full", "kernel", "depth-1", "depth-2", "expand-1", "expand-2"]
    assert top1["full"]["largest"] > FULL_ABOVE
    for phase, subnets in top1.items():
        assert subnets["largest"] > SAMPLED_ABOVE, phase
        assert subnets["random0"] > SAMPLED_ABOVE, phase
        assert subnets["smallest"] > SMALLEST_ABOVE, phase
    evaluated = json.loads((chain_run / "expand-2" / EVALUATION).read_text())["subnets"]
    smallest = SubnetConfig.from_dict(evaluated["smallest"]["config"])
    assert smallest == SubnetConfig(
        ks=[3] * 21, e=[3] * 21, d=[2] * 5, r=32, w=1.3, family="proxyless"
    )


def test_the_checkpoint_is_a_proxylessnas_supernet_the_reference_loads(chain_run, tmp_path):
    checkpoint = chain_run / "expand-2" / CHECKPOINT
    model = load_supernet(checkpoint)
    assert isinstance(model, OFAProxylessNAS) and model.width == 1.3
    assert torch.load(checkpoint, weights_only=True)["supernet"] == space.PROXYLESS.supernet(1.3)
    configs = [
        SubnetConfig.largest(r=40, w=1.3, family="proxyless"),
        SubnetConfig(
            ks=[3, 5, 7, 5] * 5 + [3],
            e=[3, 4, 6, 4] * 5 + [4],
            d=[2, 3, 4, 3, 2],
            r=32,
            w=1.3,
            family="proxyless",
        ),
    ]
    assert_reference_logits(checkpoint, configs, tmp_path)


def test_resuming_as_another_family_is_refused(chain_run):
    """The same schedule, without --family: a MobileNetV3 run in ProxylessNAS's folder."""
    result = CliRunner().invoke(
        main,
        ["train", "chain", str(CHAIN), "--data", "digits", "--out", str(chain_run)],
    )
    assert result.exit_code == 1
    assert "written by another schedule or supernet (ofa_proxyless_d234_e346_k357_w1.3)" in (
        result.output
    )


def test_an_mbconv_schedule_is_refused_for_resnet50_by_file_and_field(tmp_path):
    result = CliRunner().invoke(
        main,
        ["train", "chain", str(CHAIN), "--data", "digits", "--out", str(tmp_path)]
        + ["--family", "resnet50"],
    )
    assert result.exit_code == 1
    assert "full.json: ks: OFA-ResNet50 phases choose d, e, w only" in result.output
    assert "Traceback" not in result.output and not any(tmp_path.iterdir())


def test_accuracy_dataset_of_proxylessnas_subnets(chain_run, tmp_path):
    out = tmp_path / "acc.jsonl"
    result = CliRunner().invoke(
        main,
        ["train", "accuracy-dataset", str(chain_run / "expand-2" / CHECKPOINT)]
        + ["--data", "digits", "--out", str(out), "--subnets", "2", "--resolutions", "32"]
        + ["--calibration-images", "200", "--threads", "1"],
    )
    assert result.exit_code == 0, result.output
    pairs = read_accuracy_pairs(out)
    assert len(pairs.configs) == 2
    for config, accuracy in zip(pairs.configs, pairs.accuracy, strict=True):
        assert config.family == "proxyless" and config.w == 1.3 and len(config.ks) == 21
        assert 0.0 < accuracy <= 1.0
