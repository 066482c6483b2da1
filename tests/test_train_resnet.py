"""Progressive shrinking of OFA-ResNet50 on scikit-learn's digits through the CLI: OFA's
phases (elastic depth, expand ratio, width multiplier), each phase's subnets drawn from its
own choices, the reference loading the result with the same logits, and schedule mistakes
named by file and field.

The shipped chain (`ofa/schedules/digits-resnet50/`) takes about 2.5 minutes here, too long
for the suite: its accuracy is measured by hand and recorded in docs/training.md. The chain
run here takes its full phase and the last phase of each dimension, each cut to 2 steps of
8 images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from coordinator.cli.app import main
from ofa.nn.checkpoint import load_supernet
from ofa.nn.data import digits
from ofa.nn.resnet_supernet import OFAResNet50
from ofa.nn.train import CHECKPOINT, EVALUATION, train_phase
from ofa.resnet import ResNetConfig
from ofa.schedule import Phase, load_chain
from ofa.space import PROXYLESS
from tests.trained import SCHEDULES, assert_reference_logits, run_chain

SHIPPED = SCHEDULES / "digits-resnet50" / "chain.json"
SHORT = {"steps": 2, "warmup_steps": 1, "batch_size": 8, "eval_subnets": 0}
PHASES = ["full.json", "depth-2.json", "expand-2.json", "width-2.json"]


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory) -> tuple[Path, Path]:
    """The shipped chain with short phases: (its folder, the run's folder)."""
    folder = tmp_path_factory.mktemp("resnet-schedule")
    chain = {**json.loads(SHIPPED.read_text()), "phases": PHASES}
    assert set(PHASES) < set(json.loads(SHIPPED.read_text())["phases"])
    for name in chain["phases"]:
        phase = {**json.loads((SHIPPED.parent / name).read_text()), **SHORT}
        (folder / name).write_text(json.dumps({**phase, "eval_calibration_images": 32}))
    (folder / "chain.json").write_text(json.dumps(chain))
    out = tmp_path_factory.mktemp("resnet-chain")
    threads = torch.get_num_threads()
    try:
        run_chain(folder / "chain.json", out, "--family", "resnet50", last="width-2")
    finally:
        torch.set_num_threads(threads)  # --threads 1 set it for this process
    return folder, out


def test_each_phase_evaluates_resnet50_subnets_of_its_own_choices(chain_run):
    folder, out = chain_run
    phases = load_chain(folder / "chain.json", "resnet50").phases
    assert [p.name for p in phases] == ["full", "depth-2", "expand-2", "width-2"]
    for phase in phases:
        subnets = json.loads((out / phase.name / EVALUATION).read_text())["subnets"]
        smallest = ResNetConfig.from_dict(subnets["smallest"]["config"])
        largest = ResNetConfig.from_dict(subnets["largest"]["config"])
        assert largest == ResNetConfig.largest(r=32) and 0.0 <= subnets["largest"]["accuracy"] <= 1
        assert set(smallest.d[1:]) == {min(phase.d)} and set(smallest.w) == {min(phase.w)}
        assert smallest.d[0] == (0 if min(phase.d) == 0 else 2)  # the stem, as OFA draws it
        assert {smallest.e[b] for b in smallest.active_blocks} == {min(phase.e)}
    last = json.loads((out / "width-2" / EVALUATION).read_text())["subnets"]["smallest"]
    assert ResNetConfig.from_dict(last["config"]) == ResNetConfig.smallest(r=32)


def test_the_checkpoint_is_a_resnet50_supernet_the_reference_loads(chain_run, tmp_path):
    _, out = chain_run
    checkpoint = out / "width-2" / CHECKPOINT
    model = load_supernet(checkpoint)
    assert isinstance(model, OFAResNet50)
    assert model.classifier.linear.linear.out_features == 10
    assert torch.load(checkpoint, weights_only=True)["supernet"] == "ofa_resnet50"
    configs = [
        ResNetConfig.largest(r=40),
        ResNetConfig(d=(0, 1, 0, 2, 1), e=(0.2, 0.25, 0.35) * 6, w=(0, 1, 2, 0, 1, 2), r=32),
    ]
    assert_reference_logits(checkpoint, configs, tmp_path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"e": [0.3]}, r"^e\[0\]: expected one of 0.2, 0.25, 0.35, got 0.3"),
        ({"e": []}, r"^e: expected a non-empty list of numbers, got \[\]"),
        ({"d": [1], "w": 0}, "^w: expected a non-empty list of integers, got 0"),
        ({"w": [3]}, r"^w\[0\]: expected one of 0, 1, 2, got 3"),
        ({"ks": [3]}, "^ks: OFA-ResNet50 phases choose d, e, w only"),
        ({"sort_channels": True}, "^sort_channels: re-sorting channels is built for Mob"),
    ],
)
def test_a_resnet50_phase_is_checked_against_its_own_choices(fields, message):
    with pytest.raises(ValueError, match=message):
        Phase.from_dict({"name": "x", "batch_size": 8, "lr": 0.1, "steps": 1, **fields}, "resnet50")
    assert Phase.from_dict({"name": "x", "batch_size": 8, "lr": 0.1, "steps": 1}, "resnet50").w == (
        2,
    )
    with pytest.raises(ValueError, match="^w: MobileNetV3 phases choose ks, e, d only"):
        Phase.from_dict({"name": "x", "batch_size": 8, "lr": 0.1, "steps": 1, "w": [1]})


def test_a_phase_read_for_another_family_is_refused_before_training(tmp_path):
    phase = Phase.from_dict({"name": "x", "batch_size": 8, "lr": 0.1, "steps": 1})  # MobileNetV3
    with pytest.raises(ValueError, match="^family: phase 'x' was read for mbv3 subnets, the su"):
        train_phase(phase, digits(), tmp_path, supernet=PROXYLESS.supernet(1.3))
    assert not any(tmp_path.iterdir())
    assert "family" not in phase.to_dict() and "w" not in phase.to_dict()  # as files hold it


def test_resnet50_training_from_a_phase_file_through_the_cli(tmp_path):
    """`train run` with a ResNet50 phase file: refused with an MBConv family, runs with its own."""
    phase = {**json.loads((SHIPPED.parent / "full.json").read_text()), **SHORT, "steps": 2}
    (tmp_path / "full.json").write_text(json.dumps({**phase, "eval_calibration_images": 16}))
    args = ["train", "run", str(tmp_path / "full.json"), "--data", "digits", "--threads", "1"]
    wrong = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert wrong.exit_code == 1 and "full.json: e[0]: expected one of 3, 4, 6, got 0.35" in (
        wrong.output
    )
    done = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--family", "resnet50"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "b" / EVALUATION).exists() and not (tmp_path / "a").exists()
