"""Checkpoints: the official format loads without pickle, old names are remapped, and a
file that does not fit says exactly what is wrong."""

from __future__ import annotations

import pytest
import torch

from ofa.nn.checkpoint import load_checkpoint, read_state_dict, remap_state_dict_keys
from ofa.nn.supernet import OFAMobileNetV3
from tests.models import randomized_supernet
from tests.oracle import run_reference


def test_remap_is_a_pure_function_of_the_keys():
    old = {
        "blocks.3.mobile_inverted_conv.depth_conv.conv.conv.weight": torch.zeros(1),
        "module.first_conv.conv.weight": torch.ones(1),
        "classifier.linear.bias": torch.ones(2),
    }
    new = remap_state_dict_keys(old)
    assert list(new) == [
        "blocks.3.conv.depth_conv.conv.conv.weight",
        "first_conv.conv.weight",
        "classifier.linear.bias",
    ]
    assert new["classifier.linear.bias"] is old["classifier.linear.bias"]
    assert "module.first_conv.conv.weight" in old  # input untouched


def test_a_checkpoint_written_by_the_reference_loads(tmp_path):
    path = tmp_path / "reference.pth"
    run_reference({"width": 1.2, "seed": 3, "subnets": [], "save_state_dict": str(path)}, tmp_path)
    model = OFAMobileNetV3(1.2)
    load_checkpoint(model, path)
    saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_old_mobile_inverted_conv_naming_loads(tmp_path):
    source = randomized_supernet(1.0, seed=1)
    old = {
        k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
        for k, v in source.state_dict().items()
    }
    assert sum(".mobile_inverted_conv." in k for k in old) > 400
    torch.save({"state_dict": old}, tmp_path / "old.pth")
    model = OFAMobileNetV3(1.0)
    load_checkpoint(model, tmp_path / "old.pth")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in source.state_dict().items())


def test_a_checkpoint_of_another_width_lists_the_wrong_shapes(tmp_path):
    torch.save({"state_dict": OFAMobileNetV3(1.0).state_dict()}, tmp_path / "w10.pth")
    with pytest.raises(ValueError, match=r"wrong shape \(\d+\): blocks\.0\.conv"):
        load_checkpoint(OFAMobileNetV3(1.2), tmp_path / "w10.pth")


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = OFAMobileNetV3(1.0).state_dict()
    del state["classifier.linear.bias"]
    state["classifier.linear.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "bare.pth")  # a bare state dict is accepted too
    with pytest.raises(ValueError) as info:
        load_checkpoint(OFAMobileNetV3(1.0), tmp_path / "bare.pth")
    assert "missing (1): classifier.linear.bias" in str(info.value)
    assert "unexpected (1): classifier.linear.extra" in str(info.value)


class NotATensor:
    pass


def test_files_that_are_not_weights_only_checkpoints_are_refused(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable weights-only torch checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
    # arbitrary pickled objects are never unpickled
    torch.save({"state_dict": {}, "payload": NotATensor()}, tmp_path / "pickle.pth")
    with pytest.raises(ValueError, match="not a loadable weights-only"):
        read_state_dict(tmp_path / "pickle.pth")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "ints.pth")
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        read_state_dict(tmp_path / "ints.pth")
