"""ONNX export of subnets and of single LUT entries.

Export is deterministic (same config and weights give the same bytes), so the sha256 of the
bytes is the artifact's cache key across campaigns and devices. We use the TorchScript-based
exporter (`dynamo=False`): on this CPU it is several times faster than the dynamo exporter
and needs no onnxscript; opset 17, batch 1, static shapes.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ofa.config import SubnetConfig
from ofa.nn.layers import build_layer
from ofa.nn.supernet import OFAMobileNetV3
from ofa.plan import LOGITS, LayerSpec, layer_plan

__all__ = [
    "OPSET",
    "Artifact",
    "export_module",
    "export_subnet",
    "export_lut_entry",
    "export_lut_entries",
    "input_shape",
    "lut_entry_module",
]

OPSET = 17


@dataclass(frozen=True)
class Artifact:
    """ONNX bytes with their content address and the NCHW (or NC) input shape they take."""

    onnx: bytes
    input_shape: tuple[int, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.onnx).hexdigest()


def input_shape(spec: LayerSpec) -> tuple[int, ...]:
    """Batch-1 torch input shape of one layer: NCHW, or (1, C) for the classifier."""
    if spec.kind == LOGITS:
        return (1, spec.in_channels)
    height, width, channels = spec.in_shape
    return (1, channels, height, width)


def export_module(module: nn.Module, shape: tuple[int, ...]) -> Artifact:
    """Export `module` in eval mode for one static input shape."""
    module = module.eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            (torch.zeros(shape),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes a file object
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
        )
    return Artifact(buffer.getvalue(), tuple(shape))


def export_subnet(supernet: OFAMobileNetV3, subnet: SubnetConfig) -> Artifact:
    """The whole subnet, weights baked in, for an input of `subnet.r` x `subnet.r`."""
    return export_module(supernet.get_active_subnet(subnet), (1, 3, subnet.r, subnet.r))


def lut_entry_module(spec: LayerSpec) -> nn.Module:
    """The module measured for one LUT entry. Latency does not depend on weight values, so
    they are initialised from the LUT key (the global RNG is left alone): the module, and so
    its ONNX bytes, are a pure function of the key."""
    seed = int.from_bytes(hashlib.sha256(spec.lut_key.encode()).digest()[:8], "little")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_layer(spec).eval()


def export_lut_entry(spec: LayerSpec) -> Artifact:
    """One LUT entry as its own model."""
    return export_module(lut_entry_module(spec), input_shape(spec))


def export_lut_entries(subnet: SubnetConfig) -> dict[str, Artifact]:
    """Every distinct LUT entry of `subnet`, keyed as OFA spells it."""
    return {
        spec.lut_key: export_lut_entry(spec)
        for spec in {spec.lut_key: spec for spec in layer_plan(subnet)}.values()
    }
