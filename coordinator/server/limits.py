"""What a real agent can send: a bound on every field of every request, checked before
anything reaches the store, so that one hostile or broken client costs the server little
and nothing malformed is committed. Each refusal is a ValueError naming the field, with the
offending value cut short (error details never echo unbounded input)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from agent.device import MAX_LIST  # temperature sources, providers, runtime versions
from agent.measure import MAX_SAMPLES, BenchSettings
from agent.profile import MAX_NAME, MAX_NODES
from coordinator.state import DIGEST, LABEL
from proto.ofafleet.v1 import fleet_pb2 as pb

__all__ = [
    "check_register",
    "check_heartbeat",
    "check_lease",
    "check_read_blob",
    "check_report",
    "check_result_against_spec",
    "decode_spec",
    "clip",
    "MAX_LABELS",
    "MAX_SAMPLES",
    "MAX_REQUEST_BYTES",
]

_NAME = LABEL
_HEX_ID = re.compile(r"[0-9a-f]{1,64}")
MAX_LABELS = 32
MAX_TEXT = 256  # a device string, a version, a runtime version
MAX_MESSAGE = 4000  # a FAILED result's message (the agent cuts its own there)
# An OK result's samples: the agent times runs in blocks of BLOCK until its time cap or
# MAX_SAMPLES (the agent's own bound, 512 KiB of samples), and no run of a real model is
# under a microsecond.
BLOCK = BenchSettings.block_runs
MIN_RUN_NS = 1_000
MAX_RUN_NS = 3600 * 10**9
STOP_REASONS = ("precision", "time_cap", "cancelled")
MEASURED = (pb.RESULT_STATUS_OK, pb.RESULT_STATUS_DISTURBED)  # results that carry samples
MAX_PROFILE_BYTES = 2**20  # a profile's encoded size (MAX_NODES nodes of short names)
# The largest encoded request each method needs, checked before decoding. A report carries
# up to MAX_SAMPLES samples of at most 6 bytes each (runs under 2**41 ns, 36 minutes), and
# a profile when its job asked for one.
MAX_REQUEST_BYTES = {
    "Register": 2**17,
    "Heartbeat": 2**14,
    "LeaseJobs": 2**10,
    "ReadBlob": 2**10,
    "ReportResult": 6 * MAX_SAMPLES + MAX_PROFILE_BYTES + 2**16,
}


def clip(text: str, limit: int = 200) -> str:
    """`text` cut for an error message or a log line."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _name(field: str, value: str, pattern: re.Pattern = _NAME, allow_empty: bool = False) -> None:
    if not (allow_empty and value == "") and not pattern.fullmatch(value):
        what = (
            "1-64 characters of A-Z a-z 0-9 . _ -"
            if pattern is _NAME
            else "64 lowercase hex digits"
            if pattern is DIGEST
            else "a hex id"
        )
        raise ValueError(f"{field}: expected {what}, got {clip(repr(value), 80)}")


def _text(field: str, value: str, limit: int = MAX_TEXT) -> None:
    if len(value) > limit:
        raise ValueError(f"{field}: at most {limit} characters, got {len(value)}")


def _count(field: str, values, limit: int) -> None:
    if len(values) > limit:
        raise ValueError(f"{field}: at most {limit} entries, got {len(values)}")


def _number(field: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{field}: expected a finite number in [{low:g}, {high:g}], got {value!r}")


def _message_fields(field: str, message, ranges: Mapping[str, tuple[float, float]]) -> None:
    """Every set field of a flat message: strings and lists bounded, numbers in range."""
    for descriptor, value in message.ListFields():
        name = f"{field}.{descriptor.name}"
        if descriptor.is_repeated:
            _count(name, value, MAX_LIST)
            for i, item in enumerate(value):
                _text(f"{name}[{i}]", item)
        elif isinstance(value, str):
            _text(name, value)
        else:
            _number(name, value, *ranges.get(descriptor.name, (0, 2**62)))


_TELEMETRY = {
    "temperature_c": (-273.15, 1000),
    "gpu_temperature_c": (-273.15, 1000),
    "gpu_sm_clock_mhz": (0, 1e6),
    "gpu_memory_clock_mhz": (0, 1e6),
    "gpu_index": (0, 4096),
    "cpu_percent": (0, 100),
    "cpu_steal_percent": (0, 100),
    "cpu_freq_mhz": (0, 1e6),
    "load_1m": (0, 1e6),
}
_EVIDENCE = {
    "cpu_wait": (0, 1e6),
    "cpu_wait_peak": (0, 1e6),
    "others_cpu": (0, 2**20),
    "steal": (0, 1e6),
    "load_1m": (0, 1e6),
    "freq_min_mhz": (0, 1e6),
    "freq_max_mhz": (0, 1e6),
    "temperature_max_c": (-273.15, 1000),
    "block_spread": (0, 1e9),
    "trend": (-1, 1e9),
}
_DEVICE = {
    "physical_cores": (0, 2**20),
    "logical_cores": (0, 2**20),
    "cpu_min_mhz": (0, 1e6),
    "cpu_max_mhz": (0, 1e6),
}


def check_register(request: pb.RegisterRequest) -> None:
    _count("labels", request.labels, MAX_LABELS)
    for i, label in enumerate(request.labels):
        _name(f"labels[{i}]", label)
    _name("agent_id", request.agent_id, allow_empty=True)
    _text("agent_version", request.agent_version, 64)
    _number("threads", request.threads, 0, 4096)
    _message_fields("device", request.device, _DEVICE)


def check_heartbeat(request: pb.HeartbeatRequest, max_leases: int) -> None:
    _name("agent_id", request.agent_id)
    _count("lease_ids", request.lease_ids, max_leases)
    for i, lease_id in enumerate(request.lease_ids):
        _name(f"lease_ids[{i}]", lease_id, _HEX_ID)
    _message_fields("telemetry", request.telemetry, _TELEMETRY)


def check_lease(request: pb.LeaseJobsRequest) -> None:
    _name("agent_id", request.agent_id)
    _number("wait_s", request.wait_s, 0, 3600)


def check_read_blob(request: pb.ReadBlobRequest) -> None:
    _name("digest", request.digest, DIGEST)


def check_report(request: pb.ReportResultRequest, samples: np.ndarray) -> None:
    """What holds for any result, whatever its job (`samples` is its samples_ns as int64)."""
    _name("agent_id", request.agent_id)
    _name("job_id", request.job_id, _HEX_ID)
    _name("lease_id", request.lease_id, _HEX_ID)
    result = request.result
    _text("result.message", result.message, MAX_MESSAGE)
    _count("result.samples_ns", samples, MAX_SAMPLES)
    if result.status in MEASURED:
        if not samples.size:
            raise ValueError("result.samples_ns: a measured result needs its raw samples")
        if samples.min() <= 0:
            raise ValueError(f"result.samples_ns: every sample must be > 0 ns, got {samples.min()}")
        if result.stop_reason not in STOP_REASONS:
            raise ValueError(
                f"result.stop_reason: expected one of {', '.join(STOP_REASONS)}, "
                f"got {clip(repr(result.stop_reason), 40)}"
            )
    for name in (
        "session_create_ns",
        "first_run_ns",
        "warmup_runs",
        "warmup_ns",
        "peak_rss_bytes",
        "lease_to_report_ns",
    ):
        _number(f"result.{name}", getattr(result, name), 0, 2**62)
    for side in ("before", "after"):
        _message_fields(f"result.{side}", getattr(result, side), _TELEMETRY)
    _count("result.runtime_versions", result.runtime_versions, MAX_LIST)
    for key, value in result.runtime_versions.items():
        _text("result.runtime_versions key", key, 64)
        _text(f"result.runtime_versions[{clip(key, 64)}]", value)
    _message_fields("result.evidence", result.evidence, _EVIDENCE)
    _count("result.conditions.pinned_cores", result.conditions.pinned_cores, MAX_LIST)
    for i, core in enumerate(result.conditions.pinned_cores):
        _number(f"result.conditions.pinned_cores[{i}]", core, 0, 2**20)
    _number("result.conditions.cooldown_s", result.conditions.cooldown_s, 0, 86400)
    disturbed = result.status == pb.RESULT_STATUS_DISTURBED
    if disturbed != bool(result.evidence.reasons):
        raise ValueError(
            "result.evidence.reasons: a DISTURBED result names why, and only a DISTURBED one"
        )
    if result.HasField("profile"):
        _check_profile(result)
    if result.HasField("drift"):
        drift = result.drift
        _number("result.drift.baseline_median_ms", drift.baseline_median_ms, 0, 1e9)
        _number("result.drift.median_ms", drift.median_ms, 0, 1e9)
        _number("result.drift.drift", drift.drift, -1, 1e9)


def _check_profile(result: pb.Result) -> None:
    """An OK result's profile: its nodes, or why it has none."""
    profile = result.profile
    if result.status != pb.RESULT_STATUS_OK:
        raise ValueError("result.profile: only an OK result carries a profile")
    if profile.ByteSize() > MAX_PROFILE_BYTES:
        raise ValueError(f"result.profile: at most {MAX_PROFILE_BYTES} bytes")
    _text("result.profile.error", profile.error, MAX_MESSAGE)
    if bool(profile.error) == bool(profile.nodes):
        raise ValueError("result.profile: expected either nodes or the error that left it empty")
    if profile.nodes:
        _number("result.profile.runs", profile.runs, 1, 10**6)
    _count("result.profile.nodes", profile.nodes, MAX_NODES)
    for i, node in enumerate(profile.nodes):
        field = f"result.profile.nodes[{i}]"
        _text(f"{field}.node", node.node, MAX_NAME)
        _text(f"{field}.op_type", node.op_type, 64)
        _text(f"{field}.scope", node.scope, MAX_NAME)
        _number(f"{field}.mean_us", node.mean_us, 0, MAX_RUN_NS / 1000)


def decode_spec(spec: bytes) -> pb.BenchSpec:
    """A stored job spec, or ValueError if it cannot be sent to an agent."""
    try:
        message = pb.BenchSpec.FromString(spec)
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeWarning turned error
        raise ValueError(f"not a BenchSpec ({clip(str(exc), 100)})") from None
    for name in ("warmup_min_s", "min_time_s", "max_time_s", "target_precision"):
        if not math.isfinite(getattr(message, name)) or getattr(message, name) < 0:
            raise ValueError(f"{name}: expected a finite number >= 0, got {getattr(message, name)}")
    return message


def check_result_against_spec(result: pb.Result, samples: np.ndarray, spec: bytes) -> None:
    """A measured result's samples fit the job's settings: no run started after the time cap
    (every block but the last began before it; one run of a slow model may itself be longer
    than the cap), no more runs than the cap allows, no run of an hour or more, and a
    'precision' stop only after the minimum number of runs."""
    if result.status not in MEASURED:
        return
    settings = decode_spec(spec)
    if result.HasField("profile") and not settings.profile:  # an agent from before profiles,
        raise ValueError("result.profile: the job did not ask for a profile")  # sends none
    cap_ns = (settings.max_time_s or BenchSettings.max_time_s) * 1e9
    min_runs = settings.min_runs or BenchSettings.min_runs
    if samples.max() >= MAX_RUN_NS:
        raise ValueError(
            f"result.samples_ns: a sample of {samples.max()} ns; no run of a model takes an hour"
        )
    if samples.size > cap_ns / MIN_RUN_NS + BLOCK or samples[:-BLOCK].sum() >= cap_ns:
        raise ValueError(
            f"result.samples_ns: {samples.size} samples totalling "
            f"{samples.sum()} ns do not fit the job's time cap of {cap_ns:.0f} ns"
        )
    if result.stop_reason == "precision" and len(samples) < min_runs:
        raise ValueError(
            f"result.samples_ns: {len(samples)} samples, but a 'precision' stop "
            f"comes after at least min_runs={min_runs}"
        )
