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


def test_describe_reads_a_resnet50_config_and_export_and_campaigns_refuse_it(tmp_path):
    import json

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
    refused = CliRunner().invoke(coord, ["export", str(path), "--out", str(tmp_path / "out")])
    assert refused.exit_code == 1 and "ResNet50 subnets cannot be exported yet" in refused.output
    with pytest.raises(ValueError, match="entry 0: family: ResNet50 subnets are not measured"):
        load_configs(path)
