"""OFA-ResNet50: configs, the arithmetic counts against the reference's counter on its own
subnets, and the authors' accuracy predictor against the reference's library predictor."""

from __future__ import annotations

import random

import pytest

from ofa import plan
from ofa.resnet import ResNetAccuracyPredictor, ResNetConfig
from tests.oracle import run_reference

BASE = {"d": [0, 1, 2, 0, 1], "e": [0.25] * 18, "w": [0, 1, 2, 0, 1, 2], "r": 224}


def sampled(n: int, seed: int, resolutions: tuple[int, ...]) -> list[ResNetConfig]:
    rng = random.Random(seed)
    return [ResNetConfig.sample(rng, resolutions) for _ in range(n)]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"d": [1, 1, 2, 0, 1]}, "d[0]: expected one of 0, 2, got 1"),
        ({"d": [0, 1, 3, 0, 1]}, "d[2]: expected one of 0, 1, 2, got 3"),
        ({"e": [0.25] * 17}, "e: expected 18 entries, got 17"),
        ({"e": [0.25] * 5 + [0.3] + [0.25] * 12}, "e[5]: expected one of 0.2, 0.25, 0.35"),
        ({"e": [float("nan")] * 18}, "e[0]: expected one of 0.2, 0.25, 0.35, got nan"),
        ({"w": [0, 1, 2, 0, 1, 3]}, "w[5]: expected one of 0, 1, 2, got 3"),
        ({"w": "012012"}, "w: expected a list of 6 entries"),
        ({"r": 8}, "r: expected an integer in 32..1024, got 8"),
        ({"ks": [3] * 18}, "config: unknown field(s) 'ks'"),
    ],
)
def test_bad_resnet_configs_are_refused_naming_the_field(changes, message):
    with pytest.raises(ValueError) as info:
        ResNetConfig.from_dict({**BASE, **changes})
    assert message in str(info.value)


def test_skipped_blocks_are_canonicalised_and_json_round_trips():
    a = ResNetConfig.from_dict(BASE)
    b = ResNetConfig.from_dict({**BASE, "e": [0.25] * 2 + [0.35] + [0.25] * 15})
    # stage 0 (2 base blocks + d[1] = 1) runs slots 0..2: slot 3 is skipped, slot 2 is not
    assert a.active_blocks[:4] == [0, 1, 2, 4]
    assert a != b and a.id != b.id
    c = ResNetConfig.from_dict({**BASE, "e": [0.25] * 3 + [0.35] + [0.25] * 14})
    assert c == a and c.id == a.id and c.e[3] == 0.2
    assert ResNetConfig.from_dict({**BASE, "r": [224]}) == a
    assert ResNetConfig.from_dict(a.to_dict()) == a and '"family":"resnet50"' in a.to_json()


@pytest.fixture(scope="module")
def reference_subnets(tmp_path_factory):
    configs = sampled(10, 50, (128, 160, 224))
    configs += [
        ResNetConfig.largest(r=224),
        ResNetConfig.smallest(r=random.Random(50).randrange(128, 257)),
    ]
    reference = run_reference(
        {
            "family": "resnet50",
            "width": 1.0,
            "subnets": [{**c.to_dict(), "input": None} for c in configs],
        },
        tmp_path_factory.mktemp("resnet"),
    )
    return configs, reference


def test_macs_and_params_match_the_reference_counter(reference_subnets):
    configs, reference = reference_subnets
    for config, theirs in zip(configs, reference["subnets"], strict=True):
        assert plan.count_macs(config) == pytest.approx(theirs["macs"], rel=1e-6), config.id
        assert plan.count_params(config) == theirs["params"], config.id
        # our plan has one bottleneck per block the reference's subnet has
        blocks = {k.split(".")[1] for k in theirs["state_dict"] if k.startswith("blocks.")}
        assert len(blocks) == sum(spec.kind == plan.BOTTLENECK for spec in plan.layer_plan(config))


def test_the_official_resnet50_accuracy_predictor_gives_the_reference_outputs(assets, tmp_path):
    path = assets / "ofa_resnet50_acc_predictor.pth"
    configs = sampled(40, 7, (128, 144, 160, 176, 192, 224, 240, 256))
    configs += [ResNetConfig.largest(r=256), ResNetConfig.smallest(r=128)]
    reference = run_reference(
        {
            "width": 1.0,
            "subnets": [],
            "resnet_accuracy": {
                "predictor": str(path),
                "subnets": [c.to_dict() for c in configs],
            },
        },
        tmp_path,
    )
    ours = ResNetAccuracyPredictor.load(path).predict(configs)
    assert ours == pytest.approx(reference["accuracy"], abs=1e-6)
    assert 0.5 < min(ours) < max(ours) < 0.9  # a spread of plausible top-1s, not a constant
    with pytest.raises(ValueError, match="r: the ResNet50 accuracy predictor encodes"):
        ResNetAccuracyPredictor.load(path).predict([ResNetConfig.largest(r=208)])


def test_describe_and_export_read_a_resnet50_config_and_mbconv_readers_refuse_it(tmp_path):
    import json

    import numpy as np
    import onnxruntime as ort
    from click.testing import CliRunner

    from coordinator.cli.app import main as coord
    from ofa.config import load_configs

    config = sampled(1, 3, (224,))[0]
    path = tmp_path / "resnet.json"
    path.write_text(config.to_json())
    result = CliRunner().invoke(coord, ["describe", str(path), "--format", "json"])
    info = json.loads(result.output)
    assert info["id"] == config.id and info["macs"] == plan.count_macs(config)
    assert info["lut_keys"] == plan.lut_keys(config) and info["config"]["family"] == "resnet50"
    assert "ResNet50" in CliRunner().invoke(coord, ["describe", str(path)]).output
    exported = CliRunner().invoke(
        coord, ["export", str(path), "--out", str(tmp_path / "out"), "--lut-entries"]
    )
    assert exported.exit_code == 0, exported.output
    (model,) = (tmp_path / "out").glob(f"{config.id}-*.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 224, 224), np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 1000)
    index = json.loads((tmp_path / "out/lut/index.json").read_text())
    assert set(index) == set(plan.lut_keys(config))
    with pytest.raises(ValueError, match="entry 0: family: ResNet50 subnets are not taken here"):
        load_configs(path)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Our ResNet50 supernet and subnets against the reference's, same weights and inputs."""
    import numpy as np
    import torch

    from ofa.nn.resnet_supernet import OFAResNet50
    from tests.models import randomized

    work = tmp_path_factory.mktemp("resnet-parity")
    model = randomized(OFAResNet50(), seed=11)
    torch.save({"state_dict": model.state_dict()}, work / "weights.pt")
    configs = sampled(6, 11, (128, 160, 176))
    configs += [ResNetConfig.largest(r=160), ResNetConfig.smallest(r=131)]
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
            "family": "resnet50",
            "width": 1.0,
            "state_dict": str(work / "weights.pt"),
            "subnets": requests,
        },
        work,
    )
    return model, configs, ours, reference


def test_the_resnet50_supernet_has_the_reference_state_dict(parity):
    model, _, _, reference = parity
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == reference[
        "supernet_state_dict"
    ]
    assert reference["loaded_keys"] == {"missing": [], "unexpected": []}


def test_resnet50_logits_and_subnet_state_dicts_match_the_reference(parity):
    import numpy as np

    _, configs, ours, reference = parity
    for config, mine, theirs in zip(configs, ours, reference["subnets"], strict=True):
        ref_super = np.load(theirs["logits_super"])
        scale = np.abs(ref_super).max()
        assert ref_super.std() > 1e-3  # non-trivial outputs, or the comparison is empty
        for name, logits in (("supernet", mine["super"]), ("subnet", mine["sub"])):
            err = np.abs(logits - ref_super).max() / scale
            assert err <= 1e-5, f"{config.id} r={config.r} {name}: relative |diff| {err:.2e}"
        assert mine["sub_state"] == theirs["state_dict"], config.id


def test_a_resnet50_checkpoint_loads_as_one_and_mbconv_commands_refuse_it(tmp_path):
    import torch

    from ofa.nn.checkpoint import load_mbconv_supernet, load_supernet, save_checkpoint
    from ofa.nn.resnet_supernet import OFAResNet50
    from tests.models import randomized

    model = randomized(OFAResNet50(n_classes=10), seed=3)
    save_checkpoint(model, tmp_path / "resnet.pth")
    loaded = load_supernet(tmp_path / "resnet.pth")
    assert isinstance(loaded, OFAResNet50) and loaded.classifier.linear.linear.out_features == 10
    theirs = loaded.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())
    with pytest.raises(ValueError, match="an OFA-ResNet50 checkpoint; this takes MobileNetV3"):
        load_mbconv_supernet(tmp_path / "resnet.pth")
