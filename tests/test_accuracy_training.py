"""Our own accuracy predictor: trained with OFA's recipe it learns a real accuracy function
(the authors' predictor, plus noise, stands in for evaluated subnets), and bad data files
are refused with the line and field named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ofa.accuracy import AccuracyPredictor, ResolutionEncoding
from ofa.config import SubnetConfig, sample_configs
from ofa.nn.accuracy_training import (
    AccuracyPairs,
    TrainSettings,
    evaluate,
    fit_accuracy_predictor,
    held_out,
    read_accuracy_pairs,
)
from tests.cli_output import cli

NOISE = 0.002  # 0.2 top-1 points, about the spread of one ImageNet evaluation


@pytest.fixture(scope="module")
def pairs_file(assets, tmp_path_factory):
    official = AccuracyPredictor.load(assets / "acc_predictor.pth")
    configs = sample_configs(2500, seed=5, resolutions=(160, 176, 192, 208, 224), w=1.2)
    noisy = official.predict(configs) + np.random.default_rng(0).normal(0, NOISE, len(configs))
    path = tmp_path_factory.mktemp("acc") / "pairs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"config": c.to_dict(), "accuracy": float(a), "split": "val"}) + "\n"
            for c, a in zip(configs, noisy, strict=True)
        )
    )
    return path


def test_trained_predictor_learns_held_out_accuracy_near_the_noise(pairs_file):
    pairs = read_accuracy_pairs(pairs_file)
    mask = held_out(pairs)
    assert 0.15 < mask.mean() < 0.25
    predictor = fit_accuracy_predictor(pairs.subset(~mask), TrainSettings(epochs=60))
    metrics = evaluate(predictor, pairs.subset(mask))
    assert metrics["rmse_points"] < 2.5 * 100 * NOISE
    assert metrics["rmse_points"] < 0.35 * metrics["constant_rmse_points"]
    assert metrics["kendall_tau"] > 0.75
    assert predictor.width == 1.2 and predictor.encoding.trained == (160, 224)


def test_cli_trains_saves_npz_and_evaluates(pairs_file, tmp_path):
    out = tmp_path / "mine.npz"
    text = cli("accuracy", "train", "--data", pairs_file, "--out", out, "--epochs", "40")
    summary = text.split("held out: ")[1]
    assert 400 < int(summary.split()[0]) < 600
    rmse = float(summary.split("RMSE ")[1].split()[0])
    assert rmse < 0.6
    again = AccuracyPredictor.load(out)
    assert json.loads((tmp_path / "mine.meta.json").read_text())["held_out"][
        "rmse_points"
    ] == pytest.approx(rmse, abs=1e-3)
    (evaluated,) = json.loads(
        cli("accuracy", "eval", "--data", pairs_file, "--predictor", out, "--format", "json")
    )
    assert evaluated["n"] == 2500 and again.width == 1.2


def test_csv_data_and_small_resolutions_get_their_own_encoding(tmp_path):
    configs = sample_configs(60, seed=2, resolutions=(32, 40, 48), w=1.0)
    rows = ["config,accuracy"] + [
        '"' + c.to_json().replace('"', '""') + f'",{0.5 + c.r / 1000:.4f}' for c in configs
    ]
    (tmp_path / "small.csv").write_text("\n".join(rows) + "\n")
    pairs = read_accuracy_pairs(tmp_path / "small.csv")
    predictor = fit_accuracy_predictor(pairs, TrainSettings(epochs=30))
    assert predictor.encoding == ResolutionEncoding(32, 8, 3, (32, 48))
    predictor.save(tmp_path / "small.npz")
    again = AccuracyPredictor.load(tmp_path / "small.npz")
    assert again.encoding == predictor.encoding
    assert np.array_equal(again.predict(configs), predictor.predict(configs))
    with pytest.warns(UserWarning, match="outside 32..48"):
        again.predict([SubnetConfig.smallest(r=50)])
    with pytest.raises(ValueError, match="encodes resolutions 32..55, got 64"):
        again.predict([SubnetConfig.smallest(r=64)])


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.jsonl", '{"config": {"ks": [3]}, "accuracy": 0.7}\n', r"a.jsonl:1: config: e: missing"),
        (
            "b.jsonl",
            "\n"
            + json.dumps({"config": SubnetConfig.smallest().to_dict(), "accuracy": 76.1})
            + "\n",
            r"b.jsonl:2: accuracy: expected a fraction in 0..1, got 76.1",
        ),
        (
            "c.jsonl",
            '{"cfg": {}, "accuracy": 0.7}\n',
            r"c.jsonl:1: expected an object with 'config'",
        ),
        ("d.csv", "arch,acc\n", r"missing column\(s\) accuracy, config"),
        ("e.jsonl", "", r"no \(config, accuracy\) pairs"),
        (
            "f.jsonl",
            "".join(
                json.dumps({"config": SubnetConfig.smallest(w=w).to_dict(), "accuracy": 0.7}) + "\n"
                for w in (1.0, 1.2)
            ),
            r"w: the pairs mix supernets ofa_mbv3_d234_e346_k357_w1.0, ofa_mbv3_\S+_w1.2",
        ),
    ],
)
def test_bad_data_files_name_the_line_and_field(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        read_accuracy_pairs(tmp_path / name)
    output = cli(
        "accuracy", "train", "--data", tmp_path / name, "--out", tmp_path / "x.npz", expect=1
    )
    assert "ofa-coord: error: " in output and not (tmp_path / "x.npz").exists()


def test_held_out_keeps_an_architectures_resolutions_together_and_encodes_them_all(tmp_path):
    configs = [c.replace(r=r) for c in sample_configs(40, seed=8, w=1.2) for r in (160, 192)]
    configs += [c.replace(r=224) for c in sample_configs(20, seed=9, w=1.2)]
    pairs = AccuracyPairs(tuple(configs), np.linspace(0.7, 0.8, len(configs)))
    mask = held_out(pairs)
    assert (mask[:80:2] == mask[1:80:2]).all() and 0 < mask.sum() < len(mask)
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"config": c.to_dict(), "accuracy": float(a)}) + "\n"
            for c, a in zip(pairs.configs, pairs.accuracy, strict=True)
        )
    )
    cli("accuracy", "train", "--data", path, "--out", tmp_path / "p.npz", "--epochs", "2")
    assert AccuracyPredictor.load(tmp_path / "p.npz").encoding.trained == (160, 224)


def test_a_damaged_npz_is_a_clear_error(tmp_path):
    official = AccuracyPredictor(
        weights=(np.zeros((4, 128)), np.zeros((1, 4))), biases=(np.zeros(4), np.zeros(1))
    )
    official.save(tmp_path / "p.npz")
    assert not list(tmp_path.glob("*.partial"))
    data = (tmp_path / "p.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz: not an accuracy predictor .npz"):
        AccuracyPredictor.load(tmp_path / "cut.npz")
