"""The Python API to queue benchmark jobs for a device label (or one agent).

A model goes into the blob store once (by content); each job refers to it by digest.
Campaigns (the next layer up) are built on this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from agent.measure import RUNTIMES
from coordinator.state import BlobStore, Store
from ofa.config import show
from proto.ofafleet.v1 import fleet_pb2 as pb

__all__ = ["BenchOptions", "SPEC_SETTINGS", "model_inputs", "make_spec", "enqueue_model"]

# The proto is the settings' one schema: BenchSpec's fields other than those saying which model
# a job measures and what to record besides the timings are its settings, and BenchOptions has
# exactly these (a test holds it to them).
JOB_IDENTITY = frozenset(
    {
        "model_digest",
        "model_size",
        "subnet_config_json",
        "lut_key",
        "reference",
        "inputs",
        "model_precision",
    }
)
JOB_EXTRAS = frozenset({"profile"})  # recorded after the timed runs: not a setting of them
SPEC_SETTINGS = tuple(
    f.name for f in pb.BenchSpec.DESCRIPTOR.fields if f.name not in JOB_IDENTITY | JOB_EXTRAS
)

MAX_RUNS = 100_000
MAX_THREADS = 1024  # more than any device the fleet measures has cores
MAX_SECONDS = 3600.0  # one measurement's time settings; an hour is already absurd


# The Python types a settings value of each annotated field type may have.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str}


@dataclass(frozen=True)
class BenchOptions:
    """Measurement settings sent with a job, one field per BenchSpec setting (SPEC_SETTINGS);
    0 or '' means the agent's default (for `threads`, the agent's own --threads)."""

    threads: int = 0
    warmup_runs: int = 0
    warmup_min_s: float = 0.0
    min_runs: int = 0
    min_time_s: float = 0.0
    max_time_s: float = 0.0
    target_precision: float = 0.0
    runtime: str = "onnxruntime"
    execution_provider: str = ""

    @classmethod
    def from_dict(cls, data: Mapping) -> BenchOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"settings: unknown field(s) {', '.join(unknown)}; expected "
                f"{', '.join(sorted(known))}"
            )
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
                expected = _FIELD_TYPES[str(f.type)]
                if isinstance(value, bool) or not isinstance(value, expected):
                    raise ValueError(f"settings.{f.name}: expected {f.type}, got {show(value)}")
        options = cls(**data)
        for name, high in (
            ("threads", MAX_THREADS),
            ("warmup_runs", MAX_RUNS),
            ("min_runs", MAX_RUNS),
            ("warmup_min_s", MAX_SECONDS),
            ("min_time_s", MAX_SECONDS),
            ("max_time_s", MAX_SECONDS),
        ):
            value = getattr(options, name)
            if value < 0:
                raise ValueError(f"settings.{name}: expected >= 0, got {show(value)}")
            if not (value <= high and math.isfinite(value)):  # in that order: 10**400 is int
                raise ValueError(
                    f"settings.{name}: expected a finite number in 0..{high:g} (0 "
                    f"for the agent's default), got {show(value)}"
                )
        if 0 < options.max_time_s < options.min_time_s:
            raise ValueError(
                f"settings.max_time_s: expected at least min_time_s "
                f"({options.min_time_s:g}), got {options.max_time_s:g}"
            )
        if not 0 <= options.target_precision < 1:
            raise ValueError(
                f"settings.target_precision: expected a fraction below 1 (0 for "
                f"the agent's default), got {show(options.target_precision)}"
            )
        if options.runtime not in RUNTIMES:
            raise ValueError(
                f"settings.runtime: expected {' or '.join(RUNTIMES)}, got {show(options.runtime)}"
            )
        return options


def model_inputs(model: bytes) -> list[tuple[str, list[int]]]:
    """(name, static shape) of each graph input; a file that is not ONNX is refused."""
    import onnx  # here: importing it costs about a second, which every CLI command would pay

    try:
        proto = onnx.load_from_string(model)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ValueError(f"model: not an ONNX model ({type(exc).__name__}: {exc})") from None
    if not proto.HasField("graph"):  # empty or other protobuf bytes parse without error
        raise ValueError("model: not an ONNX model (no graph)")
    initializers = {i.name for i in proto.graph.initializer}
    inputs = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
        ]
        if any(d <= 0 for d in dims):
            raise ValueError(
                f"model: input {value.name!r} has a dynamic shape {dims}; export with static shapes"
            )
        inputs.append((value.name, dims))
    if not inputs:
        raise ValueError("model: the graph has no inputs")
    return inputs


def make_spec(
    digest: str,
    size: int,
    inputs: Sequence[tuple[str, Sequence[int]]],
    options: BenchOptions,
    *,
    subnet_json: str | None = None,
    lut_key: str | None = None,
    reference: str | None = None,
    profile: bool = False,
    precision: str = "",
) -> pb.BenchSpec:
    spec = pb.BenchSpec(
        model_digest=digest,
        model_size=size,
        model_precision=precision,
        profile=profile,
        inputs=[pb.TensorShape(name=n, dims=list(d)) for n, d in inputs],
        **{name: getattr(options, name) for name in SPEC_SETTINGS},
    )
    if sum(x is not None for x in (subnet_json, lut_key, reference)) > 1:
        raise ValueError("implements: give at most one of subnet_json, lut_key, reference")
    if subnet_json is not None:
        spec.subnet_config_json = subnet_json
    elif lut_key is not None:
        spec.lut_key = lut_key
    elif reference is not None:
        spec.reference = reference
    return spec


def enqueue_model(
    store: Store,
    blobs: BlobStore,
    model: bytes,
    *,
    label: str | None = None,
    agent_id: str | None = None,
    options: BenchOptions = BenchOptions(),
    subnet_json: str | None = None,
    lut_key: str | None = None,
    repeats: int = 1,
    max_attempts: int = 3,
    max_disturbed: int = 4,
    campaign: str | None = None,
    profile: bool = False,
) -> list[str]:
    """Store `model` (if new) and queue `repeats` jobs measuring it (and with `profile`,
    recording its per-node profile); returns the job ids."""
    inputs = model_inputs(model)
    digest = blobs.put(model)
    spec = make_spec(
        digest,
        len(model),
        inputs,
        options,
        subnet_json=subnet_json,
        lut_key=lut_key,
        profile=profile,
    ).SerializeToString()
    return store.enqueue(
        [(spec, digest)] * repeats,
        label=label,
        agent_id=agent_id,
        max_attempts=max_attempts,
        max_disturbed=max_disturbed,
        campaign=campaign,
    )
