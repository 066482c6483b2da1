"""ONNX export: runs in onnxruntime with the same numbers as torch, is byte-for-byte
deterministic, and every LUT entry becomes its own small model under its OFA key."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ofa.config import SubnetConfig, sample_configs
from ofa.nn.export import (
    OPSET,
    export_lut_entries,
    export_lut_entry,
    export_subnet,
    input_shape,
    lut_entry_module,
)
from ofa.plan import layer_plan, lut_keys
from tests.models import randomized_supernet


def run_onnx(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("width", [1.0, 1.2])
def test_subnet_onnx_matches_torch_within_1e4(width):
    supernet = randomized_supernet(width, seed=11)
    for config in sample_configs(2, seed=4, resolutions=(160, 197), w=width):
        artifact = export_subnet(supernet, config)
        x = np.random.default_rng(0).standard_normal((1, 3, config.r, config.r)).astype(np.float32)
        with torch.no_grad():
            expected = supernet(torch.from_numpy(x), config).numpy()
        assert np.abs(run_onnx(artifact.onnx, x) - expected).max() <= 1e-4


def test_onnx_is_opset_17_batch_1_static_shape():
    artifact = export_subnet(randomized_supernet(1.0, 0), SubnetConfig.smallest(r=176))
    model = onnx.load_from_string(artifact.onnx)
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 176, 176] and artifact.input_shape == (1, 3, 176, 176)


def test_export_is_deterministic_within_and_across_processes(tmp_path):
    supernet = randomized_supernet(1.0, seed=2)
    config = sample_configs(1, seed=8, resolutions=(160,))[0]
    first, second = export_subnet(supernet, config), export_subnet(supernet, config)
    assert first.onnx == second.onnx
    torch.save(supernet.state_dict(), tmp_path / "w.pt")
    script = (
        "import sys, torch; from ofa.nn.supernet import OFAMobileNetV3; "
        "from ofa.config import SubnetConfig; from ofa.nn.export import export_subnet; "
        "m = OFAMobileNetV3(1.0); m.load_state_dict(torch.load(sys.argv[1], weights_only=True)); "
        "print(export_subnet(m.eval(), SubnetConfig.from_json(sys.argv[2])).sha256)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "w.pt"), config.to_json()],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == first.sha256
    other = export_subnet(supernet, config.replace(r=164))
    assert other.sha256 != first.sha256


def test_every_lut_entry_exports_under_its_key_and_runs():
    config = sample_configs(1, seed=6, resolutions=(192,), w=1.2)[0]
    entries = export_lut_entries(config)
    assert set(entries) == set(lut_keys(config))
    specs = {spec.lut_key: spec for spec in layer_plan(config)}
    for key, artifact in entries.items():
        spec = specs[key]
        x = np.random.default_rng(1).standard_normal(input_shape(spec)).astype(np.float32)
        out = run_onnx(artifact.onnx, x)
        expected_shape = (
            (1, spec.out_shape[0])
            if len(spec.out_shape) == 1
            else (1, spec.out_channels, spec.out_shape[0], spec.out_shape[1])
        )
        assert out.shape == expected_shape, key
    assert export_lut_entry(specs[lut_keys(config)[5]]).onnx == entries[lut_keys(config)[5]].onnx


def test_a_block_entry_computes_what_its_torch_module_computes():
    spec = layer_plan(SubnetConfig.largest(r=160))[7]  # a stage-2 block with SE
    assert spec.kind == "expanded_conv" and spec.se
    artifact = export_lut_entry(spec)
    x = torch.randn(input_shape(spec), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = lut_entry_module(spec)(x).numpy()
    assert np.abs(run_onnx(artifact.onnx, x.numpy()) - expected).max() <= 1e-4
