"""The accuracy predictor: the OFA authors' file gives the reference's outputs exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ofa.accuracy import AccuracyPredictor, features
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig, sample_configs
from tests.oracle import run_reference


@pytest.fixture(scope="module")
def official(assets) -> AccuracyPredictor:
    return AccuracyPredictor.load(assets / "acc_predictor.pth")


def test_official_predictor_matches_the_reference_on_100_configs(official, assets, tmp_path):
    configs = sample_configs(100, seed=11, resolutions=(160, 176, 192, 208, 224), w=1.2)
    reference = run_reference(
        {
            "width": 1.2,
            "subnets": [],
            "accuracy": {
                "predictor": str(assets / "acc_predictor.pth"),
                "subnets": [c.to_dict() for c in configs],
            },
        },
        tmp_path,
    )["accuracy"]
    ours = official.predict(configs)
    assert np.abs(ours - np.array(reference)).max() <= 1e-6
    assert 0.7 < ours.min() and ours.max() < 0.85  # ImageNet top-1 of OFA subnets


def test_encoding_zeroes_skipped_blocks_and_places_the_resolution(official):
    config = SubnetConfig(ks=[7] * 20, e=[6] * 20, d=[2, 4, 4, 4, 4], r=176, w=1.2)
    x = features(ConfigBatch.from_configs([config]))[0]
    assert x.shape == (128,) and x.sum() == 18 + 18 + 1
    assert x[2 * 3 : 4 * 3].sum() == 0 and x[60 + 6 : 60 + 12].sum() == 0  # blocks 2, 3 skipped
    assert x[120 + (176 - 112) // 16] == 1


def test_resolutions_outside_training_warn_and_outside_the_encoding_fail(official):
    with pytest.warns(UserWarning, match="outside 160..224 are outside what it was trained on"):
        official.predict([SubnetConfig.smallest(r=128, w=1.2)])
    for r in (96, 240):
        with pytest.raises(ValueError, match=f"encodes resolutions 112..239, got {r}"):
            official.predict([SubnetConfig.smallest(r=r, w=1.2)])
    with pytest.raises(ValueError, match="for the w1.2 supernet, the configs are w1.0"):
        official.predict([SubnetConfig.smallest(r=192, w=1.0)])


def test_saved_npz_loads_without_torch_and_predicts_the_same(official, tmp_path):
    official.save(tmp_path / "acc.npz")
    again = AccuracyPredictor.load(tmp_path / "acc.npz")
    configs = sample_configs(20, seed=1, resolutions=(192,), w=1.2)
    assert again.width == 1.2
    assert np.array_equal(again.predict(configs), official.predict(configs))
    (tmp_path / "junk.pth").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a weights-only torch file"):
        AccuracyPredictor.load(tmp_path / "junk.pth")
    np.savez(tmp_path / "wrong.npz", **{"0.weight": np.zeros((3, 3)), "0.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="with a first layer taking 128 inputs"):
        AccuracyPredictor.load(tmp_path / "wrong.npz")
    saved = dict(np.load(tmp_path / "acc.npz"))
    assert str(saved.pop("family")) == "mbv3"  # files written before it load as MobileNetV3
    np.savez(tmp_path / "old.npz", **saved)
    assert AccuracyPredictor.load(tmp_path / "old.npz").family == "mbv3"
    for family, message in (
        ("resnet50", "family: expected one of mbv3, proxyless, got 'resnet50'"),
        ("proxyless", r"w: expected one of \(1.3,\) for ProxylessNAS, got 1.2"),
    ):
        np.savez(tmp_path / "bad.npz", **saved, family=np.array(family))
        with pytest.raises(ValueError, match=f"^{tmp_path / 'bad.npz'}: {message}"):
            AccuracyPredictor.load(tmp_path / "bad.npz")


def test_a_torch_file_that_is_not_a_predictor_is_refused_in_one_line(tmp_path):
    import torch

    for content in ({"state_dict": {"0.weight": torch.zeros(2)}}, torch.zeros(3)):
        torch.save(content, tmp_path / "x.pth")
        with pytest.raises(ValueError, match="expected an accuracy predictor's state dict"):
            AccuracyPredictor.load(tmp_path / "x.pth")


def test_a_predictor_that_cannot_be_saved_leaves_no_partial_file(official, tmp_path):
    (tmp_path / "p.npz").mkdir()  # the name is taken by a folder
    with pytest.raises(OSError) as error:
        official.save(tmp_path / "p.npz")
    assert error.value.filename == str(tmp_path / "p.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]
