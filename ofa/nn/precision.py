"""fp16 and int8 versions of an exported fp32 ONNX model, made with onnxruntime's own tools.

fp16: every float initializer and operation in half precision, the graph's inputs and outputs
kept fp32 (Casts at the edges), so a device feeds every precision the same way. int8: static
quantisation in QDQ form (QuantizeLinear/DequantizeLinear pairs that the execution provider
fuses into integer kernels), weights per output channel, activation ranges by MinMax over a
fixed calibration set. Both are pure functions of the fp32 bytes, so the artifacts stay
content-addressed. Torch-free, and onnx is imported only to convert: the coordinator's
commands read CALIBRATION without paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["PRECISIONS", "CALIBRATION", "calibration_inputs", "to_fp16", "to_int8", "convert"]

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_INPUTS = 8
# What an int8 model's activation ranges were calibrated on; recorded in LUT provenance.
CALIBRATION = {
    "method": "MinMax",
    "format": "QDQ",
    "activations": "int8",
    "weights": "int8 per channel",
    "inputs": CALIBRATION_INPUTS,
    "input_source": "numpy.random.default_rng(0).standard_normal, one input per batch",
}


def calibration_inputs(shape: tuple[int, ...]) -> list[np.ndarray]:
    """The fixed calibration set: CALIBRATION['inputs'] standard-normal inputs of `shape`."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(CALIBRATION_INPUTS)]


def to_fp16(model: bytes) -> bytes:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load_from_string(model), keep_io_types=True)
    _sort_nodes(half.graph)
    return half.SerializeToString()


def _sort_nodes(graph) -> None:  # an onnx.GraphProto
    """Put the nodes in an order where each follows those it reads from (the converter
    appends its input Casts at the end: onnxruntime runs that, the ONNX checker refuses it),
    keeping the given order otherwise."""
    known = {value.name for value in [*graph.input, *graph.initializer]} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in known for name in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError("model: its graph has a cycle or reads a value nothing produces")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def to_int8(
    model: bytes,
    shape: tuple[int, ...],
    calibration: Sequence[np.ndarray] | None = None,
    unsigned_activations: bool = False,
) -> bytes:
    """Quantised with activation ranges from `calibration` (default: the fixed set,
    `calibration_inputs`; a trained network's own images keep its accuracy better), the
    activations int8 or, `unsigned_activations`, uint8 (U8S8)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    proto = onnx.load_from_string(model)
    (name,) = [i.name for i in proto.graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter(calibration_inputs(shape) if calibration is None else calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            value = next(self.inputs, None)
            return None if value is None else {name: value}

    with tempfile.TemporaryDirectory(prefix="ofa-int8-") as folder, _quiet_root_logger():
        out = Path(folder) / "int8.onnx"
        quantize_static(
            proto,
            out,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8 if unsigned_activations else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibration_providers=["CPUExecutionProvider"],
        )
        return out.read_bytes()


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantiser logs advice on the root logger for every model (pre-processing, biases
    it leaves in fp32): noise in a command that quantises hundreds of LUT entries."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def convert(model: bytes, precision: str, shape: tuple[int, ...]) -> bytes:
    """`model` (fp32 ONNX taking one input of `shape`) in `precision`."""
    if precision == "fp32":
        return model
    if precision == "fp16":
        return to_fp16(model)
    if precision == "int8":
        return to_int8(model, shape)
    raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
