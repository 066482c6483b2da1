"""ONNX (and TorchScript) export of subnets and of single LUT entries.

Export is deterministic (same config and weights give the same bytes), so the sha256 of the
bytes is the artifact's cache key across campaigns and devices. We use the TorchScript-based
ONNX exporter (`dynamo=False`): on this CPU it is several times faster than the dynamo
exporter and needs no onnxscript; opset 17, static shapes. `export_model` makes the model a
measurement target runs: ONNX in fp32, fp16 or int8 (precision.py), or TorchScript for the
torch runtime, at any batch size.
"""

from __future__ import annotations

import copy
import hashlib
import io
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ofa.config import SubnetConfig
from ofa.nn.layers import build_layer
from ofa.nn.precision import convert
from ofa.nn.supernet import ElasticSupernet
from ofa.plan import LOGITS, AnyConfig, LayerSpec, layer_plan

__all__ = [
    "OPSET",
    "Artifact",
    "export_module",
    "export_subnet",
    "export_lut_entry",
    "export_lut_entries",
    "export_model",
    "export_torchscript",
    "input_shape",
    "lut_entry_module",
    "MODEL_FORMATS",
]

MODEL_FORMATS = ("onnx", "torchscript")

OPSET = 17


@dataclass(frozen=True)
class Artifact:
    """ONNX bytes with their content address and the NCHW (or NC) input shape they take."""

    onnx: bytes
    input_shape: tuple[int, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.onnx).hexdigest()


def input_shape(spec: LayerSpec, batch: int = 1) -> tuple[int, ...]:
    """Torch input shape of one layer: NCHW, or (N, C) for a classifier that does not pool."""
    if spec.kind == LOGITS and not spec.pools:
        return (batch, spec.in_channels)
    height, width, channels = spec.in_shape
    return (batch, channels, height, width)


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


class _Half(nn.Module):
    """A module run in fp16 behind fp32 inputs and outputs, as the fp16 ONNX models are."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.half()).float()


def export_torchscript(module: nn.Module, shape: tuple[int, ...], precision: str) -> bytes:
    """`module` traced for one static input shape, in fp32 or fp16. A fresh compilation unit
    per trace: TorchScript numbers the class types it has seen in a process
    (`___torch_mangle_N`), so without it a model's bytes would depend on what the process
    traced before. (Its debug information also records the Python call stack: the same
    model traced from the same call site gives the same bytes.)"""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision: TorchScript models are fp32 or fp16, not {precision!r}")
    traced_module = _Half(copy.deepcopy(module)) if precision == "fp16" else module
    torch.jit._state._python_cu = torch._C.CompilationUnit()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on constant shapes, and TorchScript's deprecation: the agent
        # loads TorchScript because its loader unpickles no Python objects (agent/measure.py).
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(traced_module.eval(), (torch.zeros(shape),))
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def export_model(
    module: nn.Module, shape: tuple[int, ...], precision: str = "fp32", fmt: str = "onnx"
) -> bytes:
    """The bytes a measurement target runs: `fmt` (MODEL_FORMATS) in `precision`."""
    if fmt == "torchscript":
        return export_torchscript(module, shape, precision)
    if fmt != "onnx":
        raise ValueError(f"format: expected one of {', '.join(MODEL_FORMATS)}, got {fmt!r}")
    return convert(export_module(module, shape).onnx, precision, shape)


def export_subnet(supernet: ElasticSupernet, subnet: SubnetConfig) -> Artifact:
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


def export_lut_entries(subnet: AnyConfig) -> dict[str, Artifact]:
    """Every distinct LUT entry of `subnet`, keyed as OFA spells it."""
    return {
        spec.lut_key: export_lut_entry(spec)
        for spec in {spec.lut_key: spec for spec in layer_plan(subnet)}.values()
    }
