"""Subnet configs: validation with clear messages, canonical form and id, JSON spellings,
published net.config files, sampling, and the size of the space."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from ofa.config import SubnetConfig, load_configs, sample_configs, space_size

BASE = {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 224}


def with_(**changes):
    return {**BASE, **changes}


@pytest.mark.parametrize(
    "data, message",
    [
        (with_(ks=[3] * 19), "ks: expected 20 entries, got 19"),
        (with_(e=[3] * 21), "e: expected 20 entries, got 21"),
        (with_(d=[2] * 4), "d: expected 5 entries, got 4"),
        (with_(ks=[3] * 5 + [9] + [3] * 14), "ks[5]: expected one of 3, 5, 7, got 9"),
        (with_(e=[3] * 7 + [5] + [3] * 12), "e[7]: expected one of 3, 4, 6, got 5"),
        (with_(d=[2, 2, 5, 2, 2]), "d[2]: expected one of 2, 3, 4, got 5"),
        (with_(r=0), "r: expected an integer in 32..1024, got 0"),
        (with_(r=-224), "r: expected an integer in 32..1024, got -224"),
        (with_(r="224"), "r: expected an integer in 32..1024, got '224' (str)"),
        (with_(r=float("nan")), "r: expected an integer in 32..1024, got nan (float)"),
        (with_(ks=["3"] * 20), "ks[0]: expected one of 3, 5, 7, got '3' (str)"),
        (with_(e=[float("nan")] * 20), "e[0]: expected one of 3, 4, 6, got nan (float)"),
        (with_(d=[True] * 5), "d[0]: expected one of 2, 3, 4, got True (bool)"),
        (with_(ks="3" * 20), "ks: expected a list of 20 integers"),
        (with_(w=1.5), "w: expected one of (1.0, 1.2) for MobileNetV3, got 1.5"),
        (with_(family="resnet"), "family: expected one of mbv3, proxyless, got 'resnet'"),
        (with_(family="proxyless"), "ks: expected 21 entries, got 20"),
        (
            with_(ks=[3] * 21, e=[3] * 21, family="proxyless", w=1.2),
            "w: expected one of (1.3,) for ProxylessNAS, got 1.2",
        ),
        (with_(r=[224, 160]), "r: expected one resolution, got [224, 160]"),
        ({"ks": [3] * 20, "e": [3] * 20, "r": 224}, "d: missing"),
        (with_(kernel=[3] * 20), "config: unknown field(s) 'kernel'"),
        ({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5}, "r: missing"),
        ([1, 2, 3], "config: expected a JSON object, got list"),
    ],
)
def test_malformed_configs_are_refused_with_a_message_naming_the_problem(data, message):
    with pytest.raises(ValueError) as info:
        SubnetConfig.from_dict(data)
    assert message in str(info.value)


def test_not_json_is_refused():
    with pytest.raises(ValueError, match="config: not valid JSON"):
        SubnetConfig.from_json("{ks: [3]")


def test_skipped_blocks_are_canonicalised_so_two_spellings_are_one_subnet():
    a = SubnetConfig.from_dict(with_(ks=[7, 7, 5, 5] * 5, e=[6, 6, 4, 4] * 5))
    b = SubnetConfig.from_dict(with_(ks=[7, 7, 3, 7] * 5, e=[6, 6, 6, 3] * 5, r=[224]))
    assert a == b and hash(a) == hash(b) and a.id == b.id
    assert a.ks[:4] == (7, 7, 3, 3)  # the skipped blocks hold the smallest choice
    assert a.to_json() == b.to_json()
    c = a.replace(d=[3, 2, 2, 2, 2])
    assert c.id != a.id and c.ks[2] == 3


def test_a_proxylessnas_subnet_names_its_family_and_always_runs_its_tail_block():
    config = SubnetConfig.smallest(r=160, w=1.3, family="proxyless").replace(
        ks=[3] * 20 + [7], e=[3] * 20 + [6]
    )
    assert config.active_blocks[-1] == 20 and config.ks[20] == 7 and config.e[20] == 6
    assert len(config.active_blocks) == 2 * 5 + 1
    text = config.to_json()
    assert '"family":"proxyless"' in text and SubnetConfig.from_json(text) == config
    # MobileNetV3, the default family, keeps the canonical JSON (and so the ids) of before
    assert "family" not in SubnetConfig.smallest().to_json()
    assert SubnetConfig.from_dict({**BASE, "family": "mbv3"}) == SubnetConfig.from_dict(BASE)
    # without a width, a ProxylessNAS subnet is w1.3, the only published one
    fields = {"ks": [3] * 21, "e": [3] * 21, "d": [2] * 5, "r": 160, "family": "proxyless"}
    assert SubnetConfig.from_dict(fields).w == 1.3
    assert space_size(family="proxyless") == space_size() * 9


def test_json_round_trip_and_ofa_spellings():
    config = sample_configs(1, seed=5, resolutions=(192,), w=1.2)[0]
    assert SubnetConfig.from_json(config.to_json()) == config
    ofa_style = {
        "ks": list(config.ks),
        "e": list(config.e),
        "d": list(config.d),
        "image_size": 192,
        "width_mult": 1.2,
    }
    assert SubnetConfig.from_dict(ofa_style) == config
    list_r = {k: v for k, v in ofa_style.items() if k != "image_size"} | {"r": [192]}
    assert SubnetConfig.from_dict(list_r) == config
    assert len(config.id) == 12 and all(ch in "0123456789abcdef" for ch in config.id)


def test_published_net_configs_of_both_families_are_read(assets):
    paths = sorted(assets.glob("ofa_specialized/*/net.config"))
    read = {path.parent.name: SubnetConfig.from_file(path) for path in paths}
    proxyless = {name: c for name, c in read.items() if c.family == "proxyless"}
    assert len(read) == 50 and len(proxyless) == 16
    assert all(c.w == 1.3 and len(c.ks) == 21 for c in proxyless.values())
    assert {name.split("-")[0] for name in proxyless} == {
        "1080ti_gpu64",
        "v100_gpu64",
        "tx2_gpu16",
        "cpu_lat",
    }
    note10 = read["note10_lat-30ms_top1-78.4_finetune-75"]
    assert (note10.w, note10.r, note10.d) == (1.2, 224, (2, 3, 3, 3, 4))
    assert read["LG-G8_lat-11ms_top1-73.0_finetune-25"].w == 1.0
    assert read["note10_lat-64ms_top1-80.2_finetune-75"].r == 260
    raw = json.loads(
        (assets / "ofa_specialized/note10_lat-30ms_top1-78.4_finetune-75/net.config").read_text()
    )
    assert SubnetConfig.from_net_config(raw, image_size=224) == note10
    with pytest.raises(ValueError, match="r: net.config has no image size"):
        SubnetConfig.from_net_config(raw)


def test_load_configs_reads_json_lists_jsonl_and_names_the_bad_line(tmp_path):
    configs = sample_configs(3, seed=1)
    (tmp_path / "a.json").write_text(json.dumps([c.to_dict() for c in configs]))
    (tmp_path / "b.jsonl").write_text("\n".join(c.to_json() for c in configs) + "\n")
    assert load_configs(tmp_path / "a.json") == configs
    assert load_configs(tmp_path / "b.jsonl") == configs
    (tmp_path / "bad.jsonl").write_text(configs[0].to_json() + "\nnot json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_configs(tmp_path / "bad.jsonl")
    (tmp_path / "bad.json").write_text(json.dumps([configs[0].to_dict(), with_(r=0)]))
    with pytest.raises(ValueError, match=r"entry 1: r: expected an integer"):
        load_configs(tmp_path / "bad.json")


def test_sampling_is_seeded_uniform_and_leaves_the_global_rng_alone():
    import random

    random.seed(123)
    before = random.random()
    random.seed(123)
    a = sample_configs(200, seed=9, resolutions=(160, 224))
    assert random.random() == before
    assert a == sample_configs(200, seed=9, resolutions=(160, 224))
    assert a != sample_configs(200, seed=10, resolutions=(160, 224))
    kernels = [k for c in a for b, k in enumerate(c.ks) if c.is_active(b)]
    for choice in (3, 5, 7):  # each choice about a third of the active blocks
        assert 0.25 < kernels.count(choice) / len(kernels) < 0.42
    assert {c.r for c in a} == {160, 224}
    with pytest.raises(ValueError, match="n: expected a non-negative integer, got -1"):
        sample_configs(-1, seed=0)


def test_space_size_matches_ofa():
    assert space_size() == 7371**5
    assert math.isclose(space_size(), 2.2e19, rel_tol=0.02)
    assert space_size(25) == 25 * 7371**5


def test_a_deeply_nested_file_is_one_line_naming_the_file_not_a_traceback(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    for read in (SubnetConfig.from_file, load_configs):
        with pytest.raises(
            ValueError, match=r"deep.json(:1)?: not valid JSON \(nested too deeply\)"
        ):
            read(deep)
    result = subprocess.run(
        [sys.executable, "-m", "coordinator", "describe", str(deep)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ofa-coord: error: {deep}: not valid JSON (nested too deeply)"
    ]
