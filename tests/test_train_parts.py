"""The pieces of progressive-shrinking training, each on its own: data, schedules, the
learning rate, channel sorting, parameter groups."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa import space
from ofa.config import SubnetConfig
from ofa.nn.channel_sort import grouped_order, sort_channels
from ofa.nn.data import ImageFolder, digits, fixed_indices, open_data, step_indices
from ofa.nn.train import _param_groups, phase_subnets
from ofa.schedule import Phase, learning_rate, load_chain, load_phase
from tests.models import randomized_supernet

SCHEDULES = Path(__file__).resolve().parents[1] / "ofa" / "schedules"


# ------------------------------------------------------------------------------------ data
def test_digits_split_is_fixed_disjoint_and_upscaled():
    first, second = digits(), digits()
    assert (len(first.train), len(first.val), first.n_classes) == (1438, 359, 10)
    assert torch.equal(first.val.pixels, second.val.pixels)
    train_rows = {row.tobytes() for row in first.train.pixels.numpy()}
    assert not any(row.tobytes() in train_rows for row in first.val.pixels.numpy()[:50])
    images, labels = first.train.batch([0, 5, 7], 40)
    assert images.shape == (3, 3, 40, 40) and images.dtype == torch.float32
    assert labels.tolist() == first.train.labels[[0, 5, 7]].tolist()
    grey = images * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) + torch.tensor(
        [0.485, 0.456, 0.406]
    ).view(1, 3, 1, 1)
    assert torch.allclose(grey[:, 0], grey[:, 2], atol=1e-6) and grey.std() > 0.2


def _write_images(root: Path, classes: dict[str, int], size=(30, 20)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")


def test_image_folder_decodes_with_pillow_and_centre_crops(tmp_path):
    _write_images(tmp_path / "train", {"cat": 3, "dog": 2})
    _write_images(tmp_path / "val", {"cat": 1, "dog": 1})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = open_data(tmp_path)
    assert data.train.classes == ("cat", "dog") and len(data.train) == 5 and len(data.val) == 2
    images, labels = data.train.batch([0, 4], 16)
    assert images.shape == (2, 3, 16, 16)
    assert labels.tolist() == [0, 1]
    (tmp_path / "train" / "dog" / "2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"dog/2.jpg: not a readable image"):
        open_data(tmp_path).train.batch([5], 16)


def test_image_folder_refuses_unknown_val_classes_and_missing_splits(tmp_path):
    _write_images(tmp_path / "train", {"cat": 1})
    with pytest.raises(ValueError, match="val"):
        open_data(tmp_path)
    _write_images(tmp_path / "val", {"cat": 1, "emu": 1})
    with pytest.raises(ValueError, match="emu"):
        open_data(tmp_path)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .jpg/.jpeg/.png images"):
        ImageFolder(tmp_path / "empty")


def test_step_indices_shard_the_global_batch_and_depend_on_the_step_only():
    n, batch, world = 50, 8, 2
    shards = [step_indices(n, 3, batch, seed=1, rank=r, world=world) for r in range(world)]
    assert len(set(shards[0]) | set(shards[1])) == batch * world  # disjoint shares
    assert np.array_equal(step_indices(n, 3, batch, 1, 1, world), shards[1])
    # consecutive global batches walk through each epoch's permutation without repeats
    seen = np.concatenate([step_indices(n, s, 5, seed=1) for s in range(10)])
    assert sorted(seen[:50]) == list(range(50))
    assert not np.array_equal(step_indices(n, 0, 5, seed=1), step_indices(n, 0, 5, seed=2))
    assert np.array_equal(fixed_indices(n, 20), fixed_indices(n, 20))
    assert len(fixed_indices(n, 500)) == n


# ------------------------------------------------------------------------------- schedules
def test_shipped_schedules_parse_and_follow_ofa_order():
    for folder in ("imagenet", "digits"):
        chain = load_chain(SCHEDULES / folder / "chain.json")
        assert [p.name for p in chain.phases] == [
            "full",
            "kernel",
            "depth-1",
            "depth-2",
            "expand-1",
            "expand-2",
        ]
        assert chain.teacher == "full"
        full, kernel, depth1, depth2, expand1, expand2 = chain.phases
        assert (full.ks, full.e, full.d, full.kd_ratio) == ((7,), (6,), (4,), 0.0)
        assert kernel.ks == (3, 5, 7) and kernel.kd_ratio == 1.0
        assert (depth1.d, depth2.d) == ((3, 4), (2, 3, 4))
        assert (expand1.e, expand2.e) == ((4, 6), (3, 4, 6))
        assert expand1.sort_channels and expand2.sort_channels and not depth2.sort_channels
        assert [p.subnets_per_step for p in chain.phases] == [1, 1, 2, 2, 4, 4]
    imagenet = load_chain(SCHEDULES / "imagenet" / "chain.json").phases
    assert imagenet[0].resolutions == tuple(space.TRAIN_RESOLUTIONS)
    per_epoch = 1_281_167 / (64 * 32)  # ImageNet on OFA's 32 GPUs
    assert imagenet[1].total_steps(1_281_167, world=32) == (
        math.ceil(125 * per_epoch),
        math.ceil(5 * per_epoch),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
        ({"ks": [3, 9]}, r"ks\[1\]: expected one of 3, 5, 7, got 9"),
        ({"e": "6"}, r"e: expected a non-empty list"),
        ({"lr": -1}, r"lr: expected a number >= 0"),
        ({"label_smoothing": 2}, r"label_smoothing: expected a number in 0..1.0"),
        ({"resolutions": [16]}, r"resolutions: 16 is outside"),
        ({"epochs": 3}, r"steps: give exactly one of 'steps' and 'epochs'"),
        ({"sort_channel": True}, r"sort_channel: unknown field"),
        ({"sort_channels": "yes"}, r"sort_channels: expected true or false"),
    ],
)
def test_bad_phase_files_name_the_file_and_field(tmp_path, change, message):
    data = json.loads((SCHEDULES / "digits" / "kernel.json").read_text())
    path = tmp_path / "phase.json"
    path.write_text(json.dumps({**data, **change}))
    with pytest.raises(ValueError, match=message) as info:
        load_phase(path)
    assert str(path) in str(info.value)


def test_bad_chain_files_are_refused(tmp_path):
    for name in ("full", "kernel"):
        (tmp_path / f"{name}.json").write_text((SCHEDULES / "digits" / f"{name}.json").read_text())
    chain = tmp_path / "chain.json"
    chain.write_text(json.dumps({"phases": ["full.json", "kernel.json"]}))
    with pytest.raises(ValueError, match="teacher: phase 'kernel' distils"):
        load_chain(chain)
    chain.write_text(json.dumps({"phases": ["full.json", "kernel.json"], "teacher": "kernal"}))
    with pytest.raises(ValueError, match="teacher: 'kernal' is not one of the phases"):
        load_chain(chain)
    chain.write_text(json.dumps({"phases": ["full.json", "missing.json"], "teacher": "full"}))
    with pytest.raises(ValueError, match="missing.json: cannot be read"):
        load_chain(chain)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    phase = Phase(name="p", batch_size=8, lr=0.1, steps=110, warmup_steps=10, warmup_lr=0.01)
    steps, warmup = phase.total_steps(1000)
    lrs = [learning_rate(phase, s, steps, warmup) for s in range(steps)]
    assert lrs[0] == pytest.approx(0.01 + 0.09 / 10) and lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.05)
    assert lrs[-1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 99 / 100)))
    assert learning_rate(phase, 60, steps, warmup, scale=4) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="warmup_steps"):
        replace(phase, warmup_steps=110).total_steps(1000)


def test_phase_subnets_stay_inside_the_phase():
    phase = load_phase(SCHEDULES / "digits" / "depth-1.json")
    subnets = phase_subnets(phase, 1.0)
    assert set(subnets) == {"largest", "smallest", "random0"}
    assert subnets["smallest"] == SubnetConfig(ks=[3] * 20, e=[6] * 20, d=[3] * 5, r=32)
    for config in subnets.values():
        assert set(config.d) <= {3, 4} and config.r == phase.eval_size
        assert {config.e[b] for b in config.active_blocks} == {6}


# -------------------------------------------------------------------------- channel sorting
def test_grouped_order_sorts_inside_kept_prefixes():
    importance = torch.tensor([1.0, 5.0, 3.0, 9.0, 0.0, 7.0])
    assert grouped_order(importance, []).tolist() == [3, 5, 1, 2, 0, 4]
    assert grouped_order(importance, [2, 6]).tolist() == [1, 0, 3, 5, 2, 4]


def test_sorting_channels_keeps_the_full_network_and_the_kept_sets():
    model = randomized_supernet(1.0, seed=3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    largest = SubnetConfig.largest(r=64)
    with torch.no_grad():
        before = model(x, largest)
    block = model.blocks[5].conv  # stage 2, with squeeze-excite
    mid4 = space.middle_channels(block.inverted_bottleneck["conv"].conv.weight.shape[1], 4)
    prefix_before = block.point_linear["conv"].conv.weight[:, :mid4].abs().sum((0, 2, 3))
    sort_channels(model, keep_expand=(4, 6))
    with torch.no_grad():
        after = model(x, largest)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    prefix_after = block.point_linear["conv"].conv.weight[:, :mid4].abs().sum((0, 2, 3))
    assert torch.allclose(prefix_before.sort().values, prefix_after.sort().values)
    assert torch.all(prefix_after[:-1] >= prefix_after[1:])  # sorted inside the kept prefix
    sort_channels(model)
    importance = block.point_linear["conv"].conv.weight.abs().sum((0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    with torch.no_grad():
        assert torch.allclose(before, model(x, largest), atol=1e-5, rtol=1e-5)


def test_sorting_proxylessnas_channels_keeps_its_function_and_reaches_the_tail_block():
    model = randomized_supernet(1.3, seed=4, family="proxyless")
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    largest = SubnetConfig.largest(r=48, w=1.3, family="proxyless")
    with torch.no_grad():
        before = model(x, largest)
    sort_channels(model)
    with torch.no_grad():
        assert torch.allclose(before, model(x, largest), atol=1e-5, rtol=1e-5)
    tail = model.elastic_block(space.PROXYLESS.n_blocks - 1).conv  # the 21st, always active
    importance = tail.point_linear["conv"].conv.weight.abs().sum((0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_phase_subnets_of_proxylessnas_have_its_shape():
    phase = load_phase(SCHEDULES / "digits" / "expand-2.json", "proxyless")
    subnets = phase_subnets(phase, 1.3)
    assert subnets["smallest"] == SubnetConfig(
        ks=[3] * 21, e=[3] * 21, d=[2] * 5, r=32, w=1.3, family="proxyless"
    )
    assert all(c.family == "proxyless" and len(c.ks) == 21 for c in subnets.values())


def test_no_weight_decay_on_batch_norm_and_biases():
    model = randomized_supernet(1.0, seed=0)
    decay, no_decay = _param_groups(model, 3e-5)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 3e-5 and no_decay["weight_decay"] == 0.0
    assert all(".bn." in names[id(p)] or names[id(p)].endswith(".bias") for p in no_decay["params"])
    assert not any(
        ".bn." in names[id(p)] or names[id(p)].endswith(".bias") for p in decay["params"]
    )
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert any(names[id(p)].endswith("7to5_matrix") for p in decay["params"])
