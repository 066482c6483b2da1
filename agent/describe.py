"""How a job is named in logs and listings: what it measures."""

from __future__ import annotations

import hashlib

from proto.ofafleet.v1 import fleet_pb2 as pb

__all__ = ["describe_spec"]


def describe_spec(spec: pb.BenchSpec) -> str:
    """The LUT key, the subnet id (sha256 of the canonical JSON, first 12 hex digits, as
    `ofa.config.SubnetConfig.id`), the reference model or, for a bare model, its digest."""
    kind = spec.WhichOneof("implements")
    if kind == "lut_key":
        return f"lut {spec.lut_key}"
    if kind == "subnet_config_json":
        return "subnet " + hashlib.sha256(spec.subnet_config_json.encode()).hexdigest()[:12]
    if kind == "reference":
        return f"reference {spec.reference}"
    return f"model {spec.model_digest[:12]}"
