"""Agent pieces on their own: model cache, backoff, spec defaults, loopback check, device
probes that fail (as on Android), and the optional torch runtime."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from dataclasses import fields, replace

import grpc
import psutil
import pytest
from google.protobuf.descriptor import FieldDescriptor

from agent import device
from agent.cache import DigestMismatch, ModelCache
from agent.client import is_loopback
from agent.measure import SETTING_FLAGS, BenchSettings, measure
from agent.retry import Backoff, call_with_retry
from agent.runner import SPEC_SETTINGS as AGENT_SPEC_SETTINGS
from agent.runner import settings_from_spec
from coordinator.services.jobs import SPEC_SETTINGS, BenchOptions, make_spec
from proto.ofafleet.v1 import fleet_pb2 as pb


def blob(n: int, seed: int) -> tuple[str, bytes]:
    data = random.Random(seed).randbytes(n)
    return hashlib.sha256(data).hexdigest(), data


def test_cache_verifies_digests_and_evicts_least_recently_used(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=2500)
    (d1, b1), (d2, b2), (d3, b3) = blob(1000, 1), blob(1000, 2), blob(1000, 3)
    with pytest.raises(DigestMismatch, match=f"expected {d2}"):
        cache.put(d2, b1)
    assert cache.get(d2) is None
    cache.put(d1, b1)
    cache.put(d2, b2)
    past = os.stat(cache.get(d2)).st_mtime - 100
    os.utime(cache.path(d2), (past, past))  # d2 is now the least recently used
    assert cache.get(d1).read_bytes() == b1  # touching d1 keeps it fresh
    cache.put(d3, b3)
    assert cache.get(d2) is None and cache.get(d1) is not None and cache.get(d3) is not None
    assert cache.size_bytes() <= 2500
    with pytest.raises(ValueError, match="exceeds the cache bound"):
        ModelCache(tmp_path / "small", max_bytes=10).put(d1, b1)
    with pytest.raises(ValueError, match="model_digest: expected 64 lowercase hex"):
        cache.get("../../etc/passwd")


class Unavailable(grpc.RpcError):
    """A gRPC error as the channel raises it when the coordinator is down."""

    def __init__(self, code=grpc.StatusCode.UNAVAILABLE):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "connection refused"


def test_backoff_is_full_jitter_doubling_to_a_cap():
    backoff, rng = Backoff(initial_s=1, max_s=8), random.Random(0)
    for attempt, cap in [(0, 1), (1, 2), (2, 4), (3, 8), (10, 8)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= cap and max(delays) > cap * 0.8


def test_only_unavailable_and_deadline_are_retried():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Unavailable()
        return "ok"

    fast = Backoff(initial_s=0.001, max_s=0.002)
    assert call_with_retry(flaky, "test", threading.Event(), fast) == "ok" and len(calls) == 3
    with pytest.raises(Unavailable):  # UNAUTHENTICATED is an answer, not an outage
        call_with_retry(
            lambda: (_ for _ in ()).throw(Unavailable(grpc.StatusCode.UNAUTHENTICATED)),
            "test",
            threading.Event(),
            fast,
        )
    calls.clear()
    with pytest.raises(Unavailable):
        call_with_retry(
            lambda: calls.append(1) or (_ for _ in ()).throw(Unavailable()),
            "test",
            threading.Event(),
            fast,
            max_attempts=4,
        )
    assert len(calls) == 4
    stop = threading.Event()
    stop.set()
    with pytest.raises(Unavailable):  # stopping: no retries
        call_with_retry(lambda: (_ for _ in ()).throw(Unavailable()), "test", stop, fast)


def test_spec_fields_left_at_zero_take_the_engine_defaults():
    settings = settings_from_spec(pb.BenchSpec(threads=2, min_runs=7))
    default = BenchSettings()
    assert settings.threads == 2 and settings.min_runs == 7
    assert settings.warmup_min_s == default.warmup_min_s and settings.runtime == "onnxruntime"
    with pytest.raises(ValueError, match="runtime: expected one of onnxruntime, torch"):
        settings_from_spec(pb.BenchSpec(runtime="tflite"))
    for field in ("min_time_s", "max_time_s", "warmup_min_s"):  # from the wire: no nan, no inf
        for value in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{field}: expected a finite number"):
                settings_from_spec(pb.BenchSpec(**{field: value}))


def test_the_proto_is_the_one_schema_of_the_benchmark_settings():
    """A setting added to BenchSpec without BenchOptions (or the engine) fails here."""
    python_type = {
        FieldDescriptor.CPPTYPE_INT32: "int",
        FieldDescriptor.CPPTYPE_DOUBLE: "float",
        FieldDescriptor.CPPTYPE_STRING: "str",
    }
    wire = {
        name: python_type[pb.BenchSpec.DESCRIPTOR.fields_by_name[name].cpp_type]
        for name in SPEC_SETTINGS
    }
    assert {f.name: f.type for f in fields(BenchOptions)} == wire
    engine = {f.name: f.type for f in fields(BenchSettings)}
    assert {name: engine[name] for name in wire} == wire  # the agent understands every one
    # and the model's precision: what the model is (not a setting), which TensorRT must know
    assert set(AGENT_SPEC_SETTINGS) == {*SPEC_SETTINGS, "model_precision"}
    assert {setting.field for setting in SETTING_FLAGS} <= set(wire)
    spec = make_spec(
        "d",
        1,
        [],
        BenchOptions(
            **{name: {"int": 3, "float": 0.25, "str": "torch"}[kind] for name, kind in wire.items()}
        ),
    )
    assert all(getattr(spec, name) for name in wire)  # make_spec copies every one


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1:5", True),
        ("127.3.4.5:5", True),
        ("localhost:5", True),
        ("[::1]:5", True),
        ("10.0.0.1:5", False),
        ("coordinator.lab:5", False),
        ("[2001:db8::1]:5", False),
    ],
)
def test_loopback_detection(address, loopback):
    assert is_loopback(address) is loopback


def test_failed_probes_leave_their_fields_out(monkeypatch):
    # A phone cannot run here; Android's denial of /proc/stat is simulated by making the
    # probes raise PermissionError, as psutil does there.
    def denied(*args, **kwargs):
        raise PermissionError("/proc/stat")

    monkeypatch.setattr(psutil, "cpu_freq", denied)
    monkeypatch.setattr(psutil, "cpu_percent", denied)
    monkeypatch.setattr(psutil, "cpu_times_percent", denied)
    info, state = device.device_info(), device.telemetry()
    assert "cpu_max_mhz" not in info and info["machine"]
    assert "cpu_freq_mhz" not in state and "cpu_steal_percent" not in state
    assert state["unix_time_ns"] > 0
    pb.DeviceInfo(**info), pb.Telemetry(**state)  # still valid protocol messages


def test_the_optional_torch_runtime_times_a_torchscript_model(tmp_path):
    import io

    import torch

    from ofa.config import SubnetConfig
    from ofa.nn.export import input_shape, lut_entry_module
    from ofa.plan import layer_plan

    spec = layer_plan(SubnetConfig.largest(r=64))[3]
    shape = input_shape(spec)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(lut_entry_module(spec), torch.zeros(shape)), buffer)
    settings = BenchSettings(
        runtime="torch",
        execution_provider="cpu",
        warmup_runs=2,
        warmup_min_s=0,
        min_runs=10,
        min_time_s=0,
        target_precision=0.5,
    )
    result = measure(buffer.getvalue(), settings, [shape])
    assert result.runtime_versions["torch"] == torch.__version__
    assert len(result.samples_ns) >= 10
    with pytest.raises(ValueError, match="inputs: the torch runtime needs the input shapes"):
        measure(buffer.getvalue(), settings)


def test_a_result_the_coordinator_rejects_is_dropped_not_fatal(tmp_path):
    """The coordinator answers FAILED_PRECONDITION for a lease it no longer knows (its
    database was restored, say); the agent logs it and carries on."""
    from agent.client import Rejected
    from agent.runner import Agent, AgentConfig
    from ofa.config import SubnetConfig
    from ofa.nn.export import export_lut_entry
    from ofa.plan import layer_plan

    model = export_lut_entry(layer_plan(SubnetConfig.smallest(r=32))[0]).onnx
    digest = hashlib.sha256(model).hexdigest()
    config = AgentConfig(coordinator="127.0.0.1:1", token="t", labels=[], cache_dir=tmp_path)
    # a result judged on the load of the machine running the suite is not this test's subject
    agent = Agent(replace(config, disturbance_check=False, cooldown=False))
    agent.cache.put(digest, model)
    reports = []

    def rejecting_report(agent_id, job, result):
        reports.append(result)
        raise Rejected("lease_id: no lease x for job y")

    agent.client.report = rejecting_report
    job = pb.Job(
        job_id="y",
        lease_id="x",
        spec=pb.BenchSpec(
            model_digest=digest,
            model_size=len(model),
            min_runs=5,
            min_time_s=0.01,
            warmup_min_s=0.01,
            target_precision=0.9,
        ),
    )
    agent._serve(job)  # must not raise
    assert reports[0].status == pb.RESULT_STATUS_OK and not agent.current_leases
    agent.client.close()
