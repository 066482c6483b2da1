"""What the tests of progressive shrinking share: running a shipped digits chain through the
CLI, and comparing a trained checkpoint's subnets with the reference's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from coordinator.cli.app import main
from ofa.nn.bn_calibration import recalibrate_bn
from ofa.nn.checkpoint import load_supernet
from ofa.nn.data import digits, fixed_indices
from ofa.nn.train import CHECKPOINT, EVALUATION
from ofa.plan import AnyConfig
from ofa.schedule import load_chain
from tests.oracle import run_reference

SCHEDULES = Path(__file__).resolve().parents[1] / "ofa" / "schedules"
CALIBRATION_IMAGES = 200  # training images that recalibrate BN before comparing logits
# Recalibrated digits subnets (6 measured, AMD EPYC): largest |logit| 1.95-6.17, ours and the
# reference's differing by at most 1.0e-6 of it; without recalibration 1.0e4-9.1e4 (largest
# net at r 32 and 40), 2.2e-3 of it apart. Both bounds sit >= 16x from what was measured.
LOGIT_SCALE_BELOW = 100.0
LOGITS_RELATIVE = 2e-5


def run_chain(chain: Path, out: Path, *options: str, last: str = "expand-2") -> str:
    """`ofa-coord train chain CHAIN --data digits --out OUT --threads 1 OPTIONS`, whose
    `last` phase finishes it; its output."""
    result = CliRunner().invoke(
        main,
        ["train", "chain", str(chain), "--data", "digits", "--out", str(out), "--threads", "1"]
        + list(options),
    )
    assert result.exit_code == 0, result.output
    assert f"chain finished: {out / last / CHECKPOINT}" in result.output
    return result.output


def evaluations(chain: Path, out: Path, family: str = "mbv3") -> dict[str, dict[str, float]]:
    """Top-1 of each phase's evaluated subnets, by phase and subnet name."""
    return {
        p.name: {
            name: r["accuracy"]
            for name, r in json.loads((out / p.name / EVALUATION).read_text())["subnets"].items()
        }
        for p in load_chain(chain, family).phases
    }


def assert_reference_logits(checkpoint: Path, configs: list[AnyConfig], tmp_path: Path) -> None:
    """The reference loads `checkpoint` with our keys and values, and each config's logits
    (BN recalibrated first, as OFA evaluates a subnet) match ours.

    Without recalibration the supernet's training-time statistics (a running mix over all
    sampled subnets) make the largest net's logits ~1e4-9e4 (float32 rounding alone then
    differs by ~200) and a mixed subnet's a near-constant ~0.7."""
    model = load_supernet(checkpoint).eval()
    data = digits()
    calibration = fixed_indices(len(data.train), CALIBRATION_IMAGES)
    requests, ours = [], []
    for i, config in enumerate(configs):
        recalibrated = load_supernet(checkpoint)
        recalibrated.set_active_subnet(config)
        recalibrate_bn(recalibrated, [data.train.batch(calibration, config.r)[0]])
        torch.save({"state_dict": recalibrated.state_dict()}, tmp_path / f"recalibrated{i}.pt")
        images = data.val.batch(list(range(4 * i, 4 * i + 4)), config.r)[0].numpy()
        np.save(tmp_path / f"x{i}.npy", images)
        subnet = {k: v for k, v in config.to_dict().items() if k != "family"}
        requests.append(
            {
                **subnet,
                "input": str(tmp_path / f"x{i}.npy"),
                "state_dict": str(tmp_path / f"recalibrated{i}.pt"),
            }
        )
        with torch.no_grad():
            ours.append(recalibrated(torch.from_numpy(images)).numpy())
    reference = run_reference(
        {
            "family": configs[0].family,
            "width": model.width,
            "n_classes": 10,
            "state_dict": str(checkpoint),
            "save_state_dict": str(tmp_path / "as_loaded.pt"),
            "subnets": requests,
        },
        tmp_path,
    )
    assert reference["loaded_keys"] == {"missing": [], "unexpected": []}
    as_loaded = torch.load(tmp_path / "as_loaded.pt", weights_only=True)["state_dict"]
    assert as_loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(as_loaded[k], v) for k, v in model.state_dict().items())
    for mine, theirs in zip(ours, reference["subnets"], strict=True):
        scale = np.abs(mine).max()
        assert 0.1 < mine.std() and scale < LOGIT_SCALE_BELOW  # sane: BN was recalibrated
        for logits in ("logits_super", "logits_sub"):
            assert np.abs(np.load(theirs[logits]) - mine).max() <= LOGITS_RELATIVE * scale
